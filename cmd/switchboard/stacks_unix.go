//go:build unix

package main

import (
	"os"
	"slices"
	"strings"
	"syscall"
)

// smallStacks runs the node with GODEBUG=adaptivestackstart=0 unless GODEBUG already says
// something of it: the process executes itself once more, same PID, same arguments. New
// goroutines then start with the smallest stack (2 KiB) instead of the average the last GC
// saw, which idle sessions in their reading loops make 4 KiB: a parked session's goroutine
// (limits.park_after) needs under 2 KiB, and with many idle sessions these are most
// goroutines (4000 idle sessions: stacks 17.2 -> 9.0 MB, RSS 22.3 -> 20.2 KiB per session).
// The runtime reads the setting only at start, and //go:debug does not take it.
func smallStacks() {
	const setting = "adaptivestackstart"
	godebug := os.Getenv("GODEBUG")
	if strings.Contains(godebug, setting) {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	if godebug != "" {
		godebug += ","
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GODEBUG=") })
	env = append(env, "GODEBUG="+godebug+setting+"=0")
	_ = syscall.Exec(exe, os.Args, env) // returns only if it failed: run as we are
}
