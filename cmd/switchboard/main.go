// Command switchboard is the Switchboard XMPP router: one binary to run a node and to
// administer the shared state in etcd.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/switchboard-im/switchboard/accounts"
	"github.com/switchboard-im/switchboard/blocking"
	"github.com/switchboard-im/switchboard/config"
	"github.com/switchboard-im/switchboard/internal/etcdx"
	"github.com/switchboard-im/switchboard/internal/gcpace"
	"github.com/switchboard-im/switchboard/node"
	"github.com/switchboard-im/switchboard/offline"
	"github.com/switchboard-im/switchboard/roster"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "switchboard:", err)
		os.Exit(1)
	}
}

type globals struct {
	configFile string
	etcd       string
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "switchboard",
		Short:         "Switchboard: a clustered XMPP router with XEP-0355 namespace delegation",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.configFile, "config", "", "YAML config file (default: built-in defaults)")
	root.PersistentFlags().StringVar(&g.etcd, "etcd", "", "etcd endpoints, comma-separated (overrides the config's etcd.endpoints)")
	root.AddCommand(serveCmd(g), userCmd(g), delegationCmd(g), privilegeCmd(g), membersCmd(g), traceCmd(g), healthCmd(g), benchCmd(g),
		clusterCmd(), versionCmd())
	return root
}

// checkHost fails unless the configuration serves host: store commands check it before
// they touch etcd, so a mistyped host fails fast.
func (g *globals) checkHost(host string) error {
	cfg, err := g.load()
	if err != nil {
		return err
	}
	return served(cfg, host)
}

// served fails unless cfg serves host.
func served(cfg *config.Config, host string) error {
	if cfg.Host(host) == nil {
		return fmt.Errorf("%s is not a host in the configuration", host)
	}
	return nil
}

func (g *globals) load() (*config.Config, error) {
	cfg, err := config.Load(g.configFile)
	if err != nil {
		return nil, err
	}
	if g.etcd != "" {
		cfg.Etcd.Endpoints = strings.Split(g.etcd, ",")
	}
	return cfg, nil
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.Log.SlogLevel()}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serveCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run a node (with no config: host localhost on loopback, embedded etcd in ./data)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			smallStacks()
			cfg, err := g.load()
			if err != nil {
				return err
			}
			base := newLogger(cfg, os.Stderr)
			log := base.With("node", cfg.Node.ID) // node.New adds the attribute itself
			pacer := gcpace.Start(cfg.Node.GCHeadroomBytes)
			defer pacer.Stop()
			n := node.New(cfg, base)
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := n.Start(ctx); err != nil {
				return err
			}
			// SIGHUP reloads the config file (delegations, components, limits)
			// without dropping connections.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for range hup {
					next, err := g.load()
					if err != nil {
						log.Error("reload: configuration refused, keeping the running one", "err", err)
						continue
					}
					if err := n.Reload(next); err != nil {
						log.Error("reload failed", "err", err)
						continue
					}
					pacer.Set(next.Node.GCHeadroomBytes)
				}
			}()
			<-ctx.Done()
			log.Info("shutting down")
			// node.drain_timeout for in-flight IQs, then up to 15 s to close the rest.
			sctx, cancel := context.WithTimeout(context.Background(), cfg.Node.DrainTimeout.D()+15*time.Second)
			defer cancel()
			return n.Stop(sctx)
		},
	}
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), "switchboard", node.Version) },
	}
}

// store connects to the configured etcd. With the embedded default and no node running,
// it starts the embedded etcd from the node's data directory for the duration of the
// command, so accounts can be added before the first `serve`.
func (g *globals) store(ctx context.Context) (*config.Config, *clientv3.Client, func(), error) {
	cfg, err := g.load()
	if err != nil {
		return nil, nil, nil, err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if !cfg.EmbeddedEtcd() {
		cli, err := etcdx.Connect(ctx, cfg.Etcd.Endpoints, cfg.Etcd.DialTimeout.D())
		if err != nil {
			return nil, nil, nil, err
		}
		return cfg, cli, func() { _ = cli.Close() }, nil
	}
	// A running node's embedded etcd answers on the client port; a refused connection
	// means no node runs, and the command starts the embedded etcd itself.
	if c, err := net.DialTimeout("tcp", cfg.Etcd.Embedded.Client, 500*time.Millisecond); err == nil {
		_ = c.Close()
		cli, err := etcdx.Connect(ctx, []string{"http://" + cfg.Etcd.Embedded.Client}, cfg.Etcd.DialTimeout.D())
		if err != nil {
			return nil, nil, nil, err
		}
		return cfg, cli, func() { _ = cli.Close() }, nil
	}
	emb, err := etcdx.StartEmbedded(ctx, etcdx.EmbeddedConfig{
		Dir:        filepath.Join(cfg.Node.DataDir, "etcd"),
		ClientAddr: cfg.Etcd.Embedded.Client,
		PeerAddr:   cfg.Etcd.Embedded.Peer,
		Name:       cfg.Node.ID,
	}, quiet)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("no running node's etcd at %s and could not start the embedded one: %w", cfg.Etcd.Embedded.Client, err)
	}
	cli, err := etcdx.Connect(ctx, emb.Endpoints(), cfg.Etcd.DialTimeout.D())
	if err != nil {
		_ = emb.Stop(context.Background())
		return nil, nil, nil, err
	}
	return cfg, cli, func() { _ = cli.Close(); _ = emb.Stop(context.Background()) }, nil
}

// withStore runs fn with the configuration and an etcd client (see store), under the
// 30 s deadline every store command has.
func (g *globals) withStore(cmd *cobra.Command, fn func(context.Context, *config.Config, *clientv3.Client) error) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
	defer cancel()
	cfg, cli, done, err := g.store(ctx)
	if err != nil {
		return err
	}
	defer done()
	return fn(ctx, cfg, cli)
}

func userCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "Manage user accounts (stored in etcd as SCRAM credentials)"}
	var stdin bool
	add := &cobra.Command{
		Use:   "add USER@HOST --password-stdin",
		Short: "Add an account; the password is read from standard input",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !stdin {
				return errors.New("give the password on standard input with --password-stdin")
			}
			host, local, err := accounts.ParseUser(args[0])
			if err != nil {
				return err
			}
			pw, err := readPassword(cmd.InOrStdin())
			if err != nil {
				return err
			}
			return g.withStore(cmd, func(ctx context.Context, cfg *config.Config, cli *clientv3.Client) error {
				if err := served(cfg, host); err != nil {
					return err
				}
				if err := accounts.New(cli, cfg.Etcd.Prefix).Add(ctx, host, local, pw, cfg.Accounts.SCRAMIterations); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "added %s@%s\n", local, host)
				return nil
			})
		},
	}
	add.Flags().BoolVar(&stdin, "password-stdin", false, "read the password from standard input (first line)")
	rm := &cobra.Command{
		Use:   "rm USER@HOST",
		Short: "Remove an account (and its roster, offline messages and blocklist)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			host, local, err := accounts.ParseUser(args[0])
			if err != nil {
				return err
			}
			return g.withStore(cmd, func(ctx context.Context, cfg *config.Config, cli *clientv3.Client) error {
				if err := accounts.New(cli, cfg.Etcd.Prefix).Remove(ctx, host, local); err != nil {
					return err
				}
				if err := roster.New(cli, cfg.Etcd.Prefix, 0).Delete(ctx, host, local); err != nil {
					return err
				}
				if _, err := offline.New(cli, cfg.Etcd.Prefix, 1, 1).Take(ctx, host, local); err != nil {
					return err
				}
				if _, _, err := blocking.New(cli, cfg.Etcd.Prefix, 0).Unblock(ctx, host, local, nil); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s@%s\n", local, host)
				return nil
			})
		},
	}
	ls := &cobra.Command{
		Use:   "ls HOST",
		Short: "List the accounts of a host",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withStore(cmd, func(ctx context.Context, cfg *config.Config, cli *clientv3.Client) error {
				users, err := accounts.New(cli, cfg.Etcd.Prefix).List(ctx, strings.ToLower(args[0]))
				if err != nil {
					return err
				}
				for _, u := range users {
					fmt.Fprintf(cmd.OutOrStdout(), "%s@%s\n", u, strings.ToLower(args[0]))
				}
				return nil
			})
		},
	}
	cmd.AddCommand(add, rm, ls)
	return cmd
}

func readPassword(r io.Reader) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, 4096))
	if err != nil {
		return "", err
	}
	pw, _, _ := strings.Cut(string(b), "\n")
	pw = strings.TrimSuffix(pw, "\r")
	if pw == "" {
		return "", errors.New("empty password on standard input")
	}
	return pw, nil
}
