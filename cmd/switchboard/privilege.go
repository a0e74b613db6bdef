package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/switchboard-im/switchboard/config"
	"github.com/switchboard-im/switchboard/privileges"
)

// Sources shown by `privilege ls`.
const (
	privSourceConfig     = "config"
	privSourceOverridden = "config (overridden)"
	privSourceEtcd       = "etcd"
	privSourceUnserved   = "etcd (host not served)"
)

func privilegeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "privilege",
		Short: "Manage XEP-0356 privileges of components per host (etcd entries override the config file's)",
	}
	var (
		p          config.Privileges
		iqs        []string
		rosterPush bool
	)
	set := &cobra.Command{
		Use:   "set HOST COMPONENT [--roster TYPE] [--roster-push=false] [--message TYPE] [--presence TYPE] [--iq NAMESPACE=TYPE]...",
		Short: "Grant a component its whole set of privileges on a host (stored in etcd, applied cluster-wide)",
		Long: `Grant a component its whole set of privileges on a host, stored in etcd and applied on
every node. It replaces, on that host, the privileges the config file gives the component:
a privilege not given here is not granted there.

  --roster none|get|set|both      --message none|outgoing
  --roster-push=false (with --roster get or both: no roster pushes to the component)
  --presence none|managed_entity|roster (roster needs --roster get or both)
  --iq NAMESPACE=none|get|set|both (repeatable)

The values are checked as the config file's are.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Check everything that needs no etcd first, so mistakes fail fast.
			host, comp, err := privileges.NormalizeHostComponent(args[0], args[1])
			if err != nil {
				return err
			}
			if p.IQ, err = parseIQFlags(iqs); err != nil {
				return err
			}
			if cmd.Flags().Changed("roster-push") {
				p.RosterPushes = &rosterPush
			}
			if err := privileges.Validate(p); err != nil {
				return err
			}
			if err := g.checkHost(host); err != nil {
				return err
			}
			return g.withStore(cmd, func(ctx context.Context, cfg *config.Config, cli *clientv3.Client) error {
				if err := privileges.NewStore(cli, cfg.Etcd.Prefix).Set(ctx, host, comp, p); err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				fmt.Fprintf(out, "set the privileges of %s on %s: %s\n", comp, host, describePrivileges(p))
				switch c := cfg.Component(comp); {
				case c == nil:
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s is not a component in the configuration: the privileges apply once it is\n", comp)
				case hasPrivileges(c.Privileges):
					fmt.Fprintf(out, "this overrides the config file's privileges of %s on %s (%s)\n", comp, host, describePrivileges(c.Privileges))
				}
				return nil
			})
		},
	}
	set.Flags().StringVar(&p.Roster, "roster", "", "roster privilege: none, get, set or both")
	set.Flags().BoolVar(&rosterPush, "roster-push", true, "with roster get or both: the component gets the users' roster pushes")
	set.Flags().StringVar(&p.Message, "message", "", "message privilege: none or outgoing")
	set.Flags().StringVar(&p.Presence, "presence", "", "presence privilege: none, managed_entity or roster")
	set.Flags().StringArrayVar(&iqs, "iq", nil, "IQ privilege for a namespace, NAMESPACE=none|get|set|both (repeatable)")

	rm := &cobra.Command{
		Use:   "rm HOST COMPONENT",
		Short: "Remove a component's privileges on a host from etcd (the config file's apply again)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			host, comp, err := privileges.NormalizeHostComponent(args[0], args[1])
			if err != nil {
				return err
			}
			return g.withStore(cmd, func(ctx context.Context, cfg *config.Config, cli *clientv3.Client) error {
				c, inConfig := configPrivileges(cfg, host, comp)
				err := privileges.NewStore(cli, cfg.Etcd.Prefix).Remove(ctx, host, comp)
				switch {
				case errors.Is(err, privileges.ErrNotFound) && inConfig && hasPrivileges(c):
					return fmt.Errorf("no privileges of %s on %s in etcd: the ones in effect (%s) come from the config file %s: change them there",
						comp, host, describePrivileges(c), cmp.Or(g.configFile, "(none)"))
				case errors.Is(err, privileges.ErrNotFound):
					return fmt.Errorf("no privileges of %s on %s in etcd", comp, host)
				case err != nil:
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "removed the privileges of %s on %s from etcd\n", comp, host)
				if inConfig {
					fmt.Fprintf(cmd.OutOrStdout(), "the config file's privileges apply again (%s)\n", describePrivileges(c))
				}
				return nil
			})
		},
	}

	ls := &cobra.Command{
		Use:   "ls [HOST]",
		Short: "List the privileges of components on all hosts, or on one, with their source",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withStore(cmd, func(ctx context.Context, cfg *config.Config, cli *clientv3.Client) error {
				stored, _, invalid, err := privileges.NewStore(cli, cfg.Etcd.Prefix).List(ctx)
				if err != nil {
					return err
				}
				for _, e := range invalid {
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: ignored by the nodes: %v\n", e)
				}
				only := ""
				if len(args) == 1 {
					only = strings.ToLower(strings.TrimSpace(args[0]))
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "HOST\tCOMPONENT\tROSTER\tMESSAGE\tPRESENCE\tIQ\tSOURCE")
				for _, r := range privilegeRows(cfg, stored, only) {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.host, r.comp,
						orNone(r.p.Roster), orNone(r.p.Message), orNone(r.p.Presence), iqList(r.p.IQ), r.source)
				}
				return tw.Flush()
			})
		},
	}
	cmd.AddCommand(set, rm, ls)
	return cmd
}

// parseIQFlags turns NAMESPACE=TYPE flags into the IQ map. The type is after the last
// "=", so a namespace may contain one.
func parseIQFlags(flags []string) (map[string]string, error) {
	if len(flags) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(flags))
	for _, f := range flags {
		i := strings.LastIndex(f, "=")
		if i <= 0 {
			return nil, fmt.Errorf("--iq %q: want NAMESPACE=TYPE (TYPE none, get, set or both)", f)
		}
		ns, typ := f[:i], f[i+1:]
		if prev, ok := m[ns]; ok && prev != typ {
			return nil, fmt.Errorf("--iq: namespace %s given twice (%s and %s)", ns, prev, typ)
		}
		m[ns] = typ
	}
	return m, nil
}

// configPrivileges returns the privileges the config file gives comp on host, and
// whether it gives it any there (host served, comp configured).
func configPrivileges(cfg *config.Config, host, comp string) (config.Privileges, bool) {
	c := cfg.Component(comp)
	if c == nil || cfg.Host(host) == nil {
		return config.Privileges{}, false
	}
	return c.Privileges, true
}

// hasPrivileges reports whether p grants anything.
func hasPrivileges(p config.Privileges) bool {
	granted := func(v string) bool { return v != "" && v != "none" }
	if granted(p.Roster) || granted(p.Message) || granted(p.Presence) {
		return true
	}
	for _, v := range p.IQ {
		if granted(v) {
			return true
		}
	}
	return false
}

func orNone(v string) string { return cmp.Or(v, "none") }

// iqList renders IQ privileges as ns=type,ns=type sorted by namespace, or "-".
func iqList(iq map[string]string) string {
	if len(iq) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(iq))
	for _, ns := range slices.Sorted(maps.Keys(iq)) {
		parts = append(parts, ns+"="+iq[ns])
	}
	return strings.Join(parts, ",")
}

func describePrivileges(p config.Privileges) string {
	roster := orNone(p.Roster)
	if (p.Roster == "get" || p.Roster == "both") && !p.RosterPush() {
		roster += " (no pushes)"
	}
	return fmt.Sprintf("roster=%s message=%s presence=%s iq=%s", roster, orNone(p.Message), orNone(p.Presence), iqList(p.IQ))
}

type privilegeRow struct {
	host, comp string
	p          config.Privileges
	source     string
	rank       int // the effective entry first when one overrides another
}

// privilegeRows merges the config's privileges (every served host × every component
// that has some) and etcd's (of host only, if not empty), sorted by host and component.
func privilegeRows(cfg *config.Config, stored map[string]map[string]config.Privileges, host string) []privilegeRow {
	var rows []privilegeRow
	for _, h := range cfg.Hosts {
		d := strings.ToLower(h.Domain)
		if host != "" && d != host {
			continue
		}
		for _, c := range cfg.Components {
			if !hasPrivileges(c.Privileges) {
				continue
			}
			comp := strings.ToLower(c.JID)
			src := privSourceConfig
			if _, ok := stored[d][comp]; ok {
				src = privSourceOverridden
			}
			rows = append(rows, privilegeRow{host: d, comp: comp, p: c.Privileges, source: src, rank: 1})
		}
	}
	for h, comps := range stored {
		if host != "" && h != host {
			continue
		}
		src := privSourceEtcd
		if cfg.Host(h) == nil {
			src = privSourceUnserved
		}
		for comp, p := range comps {
			rows = append(rows, privilegeRow{host: h, comp: comp, p: p, source: src})
		}
	}
	slices.SortFunc(rows, func(a, b privilegeRow) int {
		return cmp.Or(cmp.Compare(a.host, b.host), cmp.Compare(a.comp, b.comp), cmp.Compare(a.rank, b.rank))
	})
	return rows
}
