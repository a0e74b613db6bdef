package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchboard-im/switchboard/internal/chaos"
)

func chaosCmd() *cobra.Command {
	var (
		o           chaos.Options
		events      string
		jsonOut     bool
		allowErrors bool
	)
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "Run a cluster of node processes on loopback under steady delegated load through node 1, break it event after event, and report what became of the IQs",
		Long: `chaos starts --nodes node processes of this binary on loopback (mutual TLS, an
encrypted gossip, an embedded etcd behind a relay it can cut), connects the bench echo
component to nodes 2..N and a client to node 1, sends --rate delegated IQs per second, and
carries out --events one after the other, --settle apart. For the IQs sent after each
event (until the next) it reports: sent, ok, failed (an error answer), lost (no answer at
all), duplicated (answered twice), resent (sent again on a new stream after a node's
system-shutdown: never read there), and the error window (from the event to the last
error). The exit status is non-zero if any IQ was lost or answered twice (or failed,
unless --allow-errors).

Events:
  ` + chaos.Events,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if events != "" {
				o.Events = strings.Split(events, ",")
			}
			if !jsonOut {
				o.Progress = cmd.ErrOrStderr()
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := chaos.Run(ctx, o)
			if err != nil {
				return err
			}
			if err := report(cmd, res, jsonOut); err != nil {
				return err
			}
			t := res.Total
			if t.Lost+t.Duplicated > 0 || (t.Failed > 0 && !allowErrors) {
				return fmt.Errorf("%d IQs lost, %d answered twice, %d failed", t.Lost, t.Duplicated, t.Failed)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Nodes, "nodes", 3, "node processes")
	f.Float64Var(&o.Rate, "rate", 400, "delegated IQs per second through node 1")
	f.IntVar(&o.Clients, "clients", 8, "client sessions that share --rate")
	f.DurationVar(&o.Settle, "settle", 5*time.Second, "time after each event before the next")
	f.StringVar(&events, "events", strings.Join(chaos.DefaultEvents, ","), "events, comma-separated, in order")
	f.DurationVar(&o.EtcdDown, "etcd-down", 30*time.Second, "etcd-down: how long etcd is unreachable")
	f.DurationVar(&o.PauseFor, "pause", 3*time.Second, "pause:N: how long the node is stopped")
	f.DurationVar(&o.ComponentDelay, "component-delay", 10*time.Millisecond, "the component answers each IQ this long after it came")
	f.DurationVar(&o.DelegationTimeout, "delegation-timeout", 10*time.Second, "the nodes' delegation.timeout")
	f.DurationVar(&o.DrainTimeout, "drain-timeout", 10*time.Second, "the nodes' node.drain_timeout")
	f.StringVar(&o.Bin, "bin", "", "the switchboard binary the nodes run (default: this one; an older build to compare)")
	f.BoolVar(&o.PlainCluster, "plain-cluster", false, "no gossip keys or mutual TLS between the nodes (loopback allows it): for builds older than them")
	f.StringVar(&o.Dir, "dir", "", "work directory for configs, data and node logs (default: a temporary one)")
	f.BoolVar(&o.Keep, "keep", false, "keep the temporary work directory (node logs)")
	f.BoolVar(&jsonOut, "json", false, "print the report as JSON")
	f.BoolVar(&allowErrors, "allow-errors", false, "exit 0 even if IQs failed (never if lost or duplicated)")
	return cmd
}
