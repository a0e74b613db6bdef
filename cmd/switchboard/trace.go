package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchboard-im/switchboard/node"
)

func traceCmd(g *globals) *cobra.Command {
	var (
		admin string
		dur   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "trace JID",
		Short: "Print, live, the stanzas a JID sends and is sent, on every node of the cluster (a bare JID: all its resources)",
		Long: `trace asks every node of the cluster (from --admin, or listen.admin of the config) for
the stanzas it routes that JID sends or is sent, and prints them as they come: time, node,
kind, from, to, what became of it (routed, or the condition it was refused with) and the
stanza's first bytes. Each node runs at most 4 traces at once and sends at most 100 events a
second per trace; the end says how many it dropped. Nothing is traced unless asked.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			members, err := g.clusterMembers(admin)
			if err != nil {
				return err
			}
			secs := max(1, int(dur.Seconds()))
			q := url.Values{"jid": {args[0]}, "seconds": {fmt.Sprint(secs)}}
			out := cmd.OutOrStdout()
			var mu sync.Mutex
			var wg sync.WaitGroup
			errs := make(chan error, len(members))
			for _, m := range members {
				if m.Admin == "" {
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, err := http.Get("http://" + m.Admin + "/trace?" + q.Encode())
					if err != nil {
						errs <- fmt.Errorf("%s: %w", m.ID, err)
						return
					}
					defer resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						errs <- fmt.Errorf("%s: %s", m.ID, resp.Status)
						return
					}
					lines := bufio.NewScanner(resp.Body)
					lines.Buffer(make([]byte, 64<<10), 1<<20)
					for lines.Scan() {
						var l node.TraceLine
						if json.Unmarshal(lines.Bytes(), &l) != nil || (l.Kind == "" && !l.End) {
							continue
						}
						mu.Lock()
						if l.End {
							if l.Dropped > 0 {
								fmt.Fprintf(out, "%s: %d events dropped (rate limit)\n", l.Node, l.Dropped)
							}
						} else {
							fmt.Fprintf(out, "%s %s %s %s -> %s %s: %s\n", l.At.Format("15:04:05.000"), l.Node, l.Kind,
								dash(l.From), dash(l.To), l.Outcome, l.Stanza)
						}
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				fmt.Fprintln(cmd.ErrOrStderr(), "trace:", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&admin, "admin", "", "admin HTTP address of any node (default: listen.admin of the config)")
	cmd.Flags().DurationVar(&dur, "for", time.Minute, "how long to trace (at most 10m)")
	return cmd
}
