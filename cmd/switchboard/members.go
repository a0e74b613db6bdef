package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchboard-im/switchboard/cluster"
	"github.com/switchboard-im/switchboard/node"
)

// membersCmd asks one node's admin API for the cluster, then every member for its own
// counts (no node holds the whole session table).
func membersCmd(g *globals) *cobra.Command {
	var admin string
	cmd := &cobra.Command{
		Use:   "members",
		Short: "List the cluster's nodes with their state, addresses, sessions and components",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			members, err := g.clusterMembers(admin)
			if err != nil {
				return err
			}
			hc := &http.Client{Timeout: 5 * time.Second}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NODE\tSTATE\tGOSSIP\tREMOTE\tADMIN\tSESSIONS\tCOMPONENTS")
			for _, m := range members {
				sessions, comps := "?", "?"
				var local node.LocalInfo
				if m.Admin != "" && getJSON(hc, "http://"+m.Admin+"/local", &local) == nil {
					sessions, comps = fmt.Sprint(local.Sessions), fmt.Sprint(local.Components)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.State, dash(m.Gossip), dash(m.Remote), dash(m.Admin), sessions, comps)
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVar(&admin, "admin", "", "admin HTTP address of any node (default: listen.admin of the config)")
	return cmd
}

// clusterMembers asks the node at the --admin address (flag), or else at listen.admin of
// the configuration, for the cluster's members.
func (g *globals) clusterMembers(flag string) ([]cluster.Member, error) {
	admin, err := g.adminAddr(flag)
	if err != nil {
		return nil, err
	}
	var members []cluster.Member
	if err := getJSON(&http.Client{Timeout: 5 * time.Second}, "http://"+admin+"/cluster/members", &members); err != nil {
		return nil, fmt.Errorf("asking the node at %s: %w", admin, err)
	}
	return members, nil
}

// adminAddr is the --admin flag, or else listen.admin of the configuration.
func (g *globals) adminAddr(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	cfg, err := g.load()
	if err != nil {
		return "", err
	}
	return cfg.Listen.Admin, nil
}

func getJSON(hc *http.Client, url string, v any) error {
	resp, err := hc.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// healthCmd is for container healthchecks and scripts: exit 0 if the node answers
// /healthz (or, with --ready, /readyz) with 200, else 1.
func healthCmd(g *globals) *cobra.Command {
	var admin string
	var ready bool
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Exit 0 if the node is alive (--ready: ready to serve), 1 if not",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			admin, err := g.adminAddr(admin)
			if err != nil {
				return err
			}
			path := "/healthz"
			if ready {
				path = "/readyz"
			}
			hc := &http.Client{Timeout: 3 * time.Second}
			resp, err := hc.Get("http://" + admin + path)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: %s", path, resp.Status)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "ok")
			return nil
		},
	}
	cmd.Flags().StringVar(&admin, "admin", "", "admin HTTP address (default: listen.admin of the config)")
	cmd.Flags().BoolVar(&ready, "ready", false, "check /readyz instead of /healthz")
	return cmd
}
