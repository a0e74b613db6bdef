package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchboard-im/switchboard/accounts"
	"github.com/switchboard-im/switchboard/internal/bench"
)

func benchCmd(g *globals) *cobra.Command {
	var (
		o           bench.Options
		jsonOut     bool
		createUsers bool
		allowErrors bool
		cpuProfile  string
	)
	cmd := &cobra.Command{
		Use:   "bench delegation|message|login|idle|floor|flood|s2s|chaos",
		Short: "Generate XMPP load against a server (Switchboard or any other) and report throughput, latency and errors",
		Long: `bench speaks standard XMPP c2s (STARTTLS or direct TLS, SCRAM/PLAIN, bind) and runs
its own XEP-0114 echo component, so the same run can target Switchboard or another server.

Scenarios:
  delegation  IQ gets in --namespace to --to (default: the domain), which the server
              delegates (XEP-0355) to the echo component; --window outstanding per connection
  message     chat messages from --conns senders to as many receivers (on --target, if set)
  login       complete logins per second (TLS + SASL + bind), --conns at a time
  idle        --sessions idle authenticated TLS sessions; with --server-pid, server RSS per session
  floor       no server: delegation's traffic (--conns, --window, --rate) through four loopback
              TCP hops inside the tool (client, relay, echo, relay, client) with no XML or TLS:
              the latency this machine gives any router at that load
  flood       one client floods --flood roster|presence|message for --duration (default 5s)
              as fast as the server reads; another user pings every 100 ms (the latency
              reported); with --server-pid, the server's RSS before, at most and after
  s2s         federation: --conns clients on --server (--domain) send chat messages to as
              many on --target (--target-domain, another server), paced at --rate in all
              (0: as fast as --window allows); --reverse sends B to A as well, at the same
              time; reports delivered/s, one-way latency, losses and out-of-order arrivals
              (per direction too). Create the accounts on each server with its own tool

Every reply is matched to its request by id; a missing, extra, duplicate or wrong reply
is an error. The exit status is non-zero if there were errors (unless --allow-errors).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			scenario := args[0]
			known := false
			for _, s := range bench.Scenarios {
				known = known || s == scenario
			}
			if !known {
				return fmt.Errorf("unknown scenario %q (one of %s)", scenario, strings.Join(bench.Scenarios, ", "))
			}
			if !cmd.Flags().Changed("count") && o.Dur == 0 {
				switch scenario {
				case bench.LoginScen:
					o.Count = 500
				default:
					o.Count = 100000
				}
			}
			if scenario != bench.Delegation {
				o.Component = ""
			} else if o.Component != "" && o.ComponentSecret == "" {
				return errors.New("--component-secret is required to run the echo component (or --component '' to run none)")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if createUsers {
				if err := g.createBenchUsers(ctx, &o); err != nil {
					return err
				}
			}
			if !jsonOut {
				o.Progress = cmd.ErrOrStderr()
			}
			if cpuProfile != "" {
				stopProfile, err := startCPUProfile(cpuProfile)
				if err != nil {
					return err
				}
				defer stopProfile()
			}
			res, err := bench.Run(ctx, scenario, o)
			if err != nil {
				return err
			}
			if err := report(cmd, res, jsonOut); err != nil {
				return err
			}
			if res.Errors > 0 && !allowErrors {
				return fmt.Errorf("%d errors (first: %s)", res.Errors, res.FirstError)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Client.Addr, "server", "127.0.0.1:5222", "c2s address of the server under test")
	f.StringVar(&o.Target, "target", "", "message: c2s address for the receivers (another node; default --server); s2s: c2s address of the other server")
	f.StringVar(&o.TargetDomain, "target-domain", "", "s2s: the other server's domain (its users PREFIX0..)")
	f.BoolVar(&o.Reverse, "reverse", false, "s2s: also send from --target-domain to --domain, at the same rate and time")
	f.StringVar(&o.Client.Domain, "domain", "localhost", "XMPP domain of the users")
	f.BoolVar(&o.Client.DirectTLS, "direct-tls", false, "TLS from the first byte (e.g. port 5223) instead of STARTTLS")
	f.BoolVar(&o.Client.Insecure, "insecure", false, "do not verify the server's certificate (self-signed test servers)")
	f.StringVar(&o.Client.ServerName, "tls-server-name", "", "TLS server name (default --domain)")
	f.StringVar(&o.Client.Mech, "mech", "auto", "SASL mechanism: SCRAM-SHA-256, SCRAM-SHA-1, PLAIN, or auto (the best offered)")
	f.StringVar(&o.Component, "component", "127.0.0.1:5347", "delegation: XEP-0114 address for the echo component ('' to run none)")
	f.StringVar(&o.ComponentJID, "component-jid", "", "delegation: the echo component's JID (default bench.DOMAIN)")
	f.StringVar(&o.ComponentSecret, "component-secret", "", "delegation: the echo component's XEP-0114 secret")
	f.IntVar(&o.ComponentConns, "component-conns", 1, "delegation: connections of the echo component")
	f.IntVar(&o.Users, "users", 10, "bench accounts PREFIX0..PREFIX(N-1); connections share them round-robin")
	f.StringVar(&o.UserPrefix, "user-prefix", "bench", "localpart prefix of the bench accounts")
	f.StringVar(&o.Password, "password", "bench", "password of every bench account")
	f.IntVar(&o.Conns, "conns", 10, "client connections (message: sender/receiver pairs; login/idle: concurrent workers)")
	f.IntVar(&o.Window, "window", 50, "requests outstanding per connection (1: sequential, for latency)")
	f.Int64Var(&o.Count, "count", 0, "operations in all (default 100000; login: 500)")
	f.DurationVar(&o.Dur, "duration", 0, "run for this long instead of --count")
	f.Float64Var(&o.Rate, "rate", 0, "delegation, floor, s2s (each direction): total requests per second, paced (0: as fast as the window allows)")
	f.StringVar(&o.Namespace, "namespace", "urn:example:bench", "delegation: namespace of the IQ payload")
	f.StringVar(&o.To, "to", "", "delegation: the IQs' 'to' (default the domain; the component's JID sends them to it directly)")
	f.IntVar(&o.Sessions, "sessions", 1000, "idle: sessions to open")
	f.DurationVar(&o.Hold, "hold", 3*time.Second, "idle: how long to keep them idle before reading the server's RSS")
	f.IntVar(&o.ServerPID, "server-pid", 0, "idle, flood: server process id (reads /proc/PID/status VmRSS)")
	f.StringVar(&o.Flood, "flood", bench.FloodRoster, "flood: what the flooder sends: "+strings.Join(bench.FloodKinds, ", "))
	f.DurationVar(&o.Timeout, "timeout", 10*time.Second, "a reply missing for this long is an error (also bounds each login)")
	f.DurationVar(&o.MaxTime, "max-time", 10*time.Minute, "hard limit of the whole run")
	f.BoolVar(&jsonOut, "json", false, "print the result as JSON")
	f.BoolVar(&allowErrors, "allow-errors", false, "exit 0 even if there were errors")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write the load tool's own CPU profile to this file (what the tool costs the machine)")
	f.BoolVar(&createUsers, "create-users", false, "first create the bench accounts in Switchboard's store (--config/--etcd)")
	cmd.AddCommand(chaosCmd())
	return cmd
}

// startCPUProfile profiles this process into path until the returned function runs.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// createBenchUsers stores the bench accounts (Switchboard only: other servers have their
// own tools, e.g. prosodyctl) and waits until the server lets the last one log in.
func (g *globals) createBenchUsers(ctx context.Context, o *bench.Options) error {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cfg, cli, done, err := g.store(cctx)
	if err != nil {
		return err
	}
	defer done()
	if err := served(cfg, o.Client.Domain); err != nil {
		return err
	}
	users := max(o.Users, 1)
	if err := bench.CreateUsers(cctx, accounts.New(cli, cfg.Etcd.Prefix), o.Client.Domain, o.UserPrefix, o.Password, users, cfg.Accounts.SCRAMIterations); err != nil {
		return err
	}
	cc := o.Client
	cc.Timeout = 5 * time.Second
	return bench.WaitLogin(cctx, cc, fmt.Sprintf("%s%d", o.UserPrefix, users-1), o.Password, 10*time.Second)
}

// report prints a load run's result, as JSON or as text.
func report(cmd *cobra.Command, res interface {
	WriteJSON(io.Writer) error
	WriteText(io.Writer)
}, jsonOut bool) error {
	if jsonOut {
		return res.WriteJSON(cmd.OutOrStdout())
	}
	res.WriteText(cmd.OutOrStdout())
	return nil
}
