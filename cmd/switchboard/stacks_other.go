//go:build !unix

package main

// smallStacks cannot re-execute the process here: Go's default initial stacks stay.
func smallStacks() {}
