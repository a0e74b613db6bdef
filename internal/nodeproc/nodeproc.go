// Package nodeproc runs Switchboard nodes as child processes, to be killed, stopped,
// paused and started again: the test cluster and the chaos tool (`switchboard bench
// chaos`) use it.
package nodeproc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/switchboard-im/switchboard/cluster"
	"github.com/switchboard-im/switchboard/config"
)

// Process is one node's process: Command makes the command of each run.
type Process struct {
	ID      string
	Admin   string // the node's admin HTTP address (readiness, members)
	Command func() *exec.Cmd
	Logs    io.Writer // both outputs of every run, each headed by a line of its own

	cmd  *exec.Cmd
	done chan struct{}
}

// Start runs the node (again).
func (p *Process) Start() error {
	cmd := p.Command()
	if p.Logs != nil {
		fmt.Fprintf(p.Logs, "==== start %s\n", time.Now().Format(time.RFC3339Nano))
		cmd.Stdout, cmd.Stderr = p.Logs, p.Logs
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", p.ID, err)
	}
	p.cmd = cmd
	p.done = make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(p.done)
	return nil
}

// Running reports whether the process was started and has not been seen to end.
func (p *Process) Running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Kill ends the node with SIGKILL (no goodbye to the cluster) and waits for it.
func (p *Process) Kill() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	p.cmd = nil
}

// Stop ends the node gracefully (SIGTERM) and waits for it; past timeout it is killed,
// and the error says so.
func (p *Process) Stop(timeout time.Duration) error {
	if p.cmd == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case <-p.done:
	case <-time.After(timeout):
		err = fmt.Errorf("%s did not stop within %v of SIGTERM: killed", p.ID, timeout)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd = nil
	return err
}

// Pause stops the process (SIGSTOP): it holds its connections but reads nothing, as a
// node that hangs does. Resume continues it.
func (p *Process) Pause() { p.signal(syscall.SIGSTOP) }

// Resume continues a paused node (SIGCONT).
func (p *Process) Resume() { p.signal(syscall.SIGCONT) }

func (p *Process) signal(s os.Signal) {
	if p.cmd != nil {
		_ = p.cmd.Process.Signal(s)
	}
}

// WaitReady waits, until ctx ends, for the node's /readyz to answer 200.
func (p *Process) WaitReady(ctx context.Context) error {
	return p.until(ctx, "ready", func() bool {
		resp, err := http.Get("http://" + p.Admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// WaitMembers waits, until ctx ends, for the node to see n members.
func (p *Process) WaitMembers(ctx context.Context, n int) error {
	return p.until(ctx, fmt.Sprintf("seeing %d members", n), func() bool {
		ms, err := p.Members()
		return err == nil && len(ms) == n
	})
}

func (p *Process) until(ctx context.Context, what string, ok func() bool) error {
	for !ok() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not %s: %w", p.ID, what, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// Members is what the node's admin API says about the cluster.
func (p *Process) Members() ([]cluster.Member, error) {
	resp, err := http.Get("http://" + p.Admin + "/cluster/members")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New(resp.Status)
	}
	var ms []cluster.Member
	return ms, json.NewDecoder(resp.Body).Decode(&ms)
}

// Conn is a component connection as a node's /cluster/components lists it.
type Conn struct {
	Domain    string `json:"domain"`
	Key       string `json:"key"`
	Local     bool   `json:"local"`
	Withdrawn bool   `json:"withdrawn"`
	Stalled   bool   `json:"stalled"`
	Down      bool   `json:"down"`
}

// Components is what the node's directory lists: every component connection it knows.
func (p *Process) Components() ([]Conn, error) {
	resp, err := http.Get("http://" + p.Admin + "/cluster/components")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New(resp.Status)
	}
	var cs []Conn
	return cs, json.NewDecoder(resp.Body).Decode(&cs)
}

// WriteConfig writes cfg as a YAML file a node can load.
func WriteConfig(path string, cfg *config.Config) error {
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}
