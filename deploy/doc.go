// Package deploy holds Switchboard's deployment files: the container images
// (Dockerfile, etcd.Dockerfile, build-images.sh), a three-node docker compose cluster,
// Kubernetes manifests (k8s/), a systemd unit and example configs (examples/).
//
// It has no code. Its tests check that every YAML file here parses and that every
// Switchboard config here loads and validates with config.Load; compose_test.go (build
// tag compose, run by test-compose.sh) runs fault tests against the compose cluster.
package deploy
