// Package pb holds the protobuf messages that cross nodes.
package pb

//go:generate protoc --go_out=. --go_opt=paths=source_relative switchboard.proto
