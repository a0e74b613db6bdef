package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// runLogin measures complete logins: TCP connect, TLS, SASL, bind, then the stream is
// closed. Conns workers log in concurrently; latency is one whole login.
func runLogin(ctx context.Context, o *Options) (*Result, error) {
	base := time.Now()
	rid := runID()
	stop, release := newStopper(ctx, o, func() {})
	defer release()
	var started atomic.Int64
	workers := make([]Stats, o.Conns)
	start := startSpan()
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := &workers[i]
			cfg := o.Client
			for !stop.stop.Load() {
				k := started.Add(1) - 1
				if o.Dur <= 0 && k >= o.Count {
					return
				}
				t0 := time.Now()
				c, err := Login(ctx, &cfg, o.User(int(k)), o.Password, "l"+rid+"-"+strconv.FormatInt(k, 10), base)
				if err != nil {
					st.Err(ErrConnect, 1, err.Error())
					continue
				}
				st.Lat.Record(time.Since(t0))
				st.Ops++
				c.Close()
			}
		}()
	}
	wg.Wait()
	ran := start.end()
	var total Stats
	for i := range workers {
		total.Merge(&workers[i])
	}
	res := &Result{Scenario: LoginScen, Server: o.Client.Addr, Conns: o.Conns}
	if o.Dur <= 0 {
		res.Requested = uint64(o.Count)
		if done := total.Ops + total.Errors(); done < uint64(o.Count) {
			total.Err(ErrNotSent, uint64(o.Count)-done, "the run ended before these logins were tried")
		}
	}
	res.fill(&total, ran)
	return res, nil
}

// runIdle opens Sessions authenticated TLS sessions (Conns at a time), leaves them idle
// for Hold, reads the server's RSS, then checks that every session still answers a ping.
// ops = sessions that were opened and answered; latency = login time.
func runIdle(ctx context.Context, o *Options) (*Result, error) {
	base := time.Now()
	rid := runID()
	res := &Result{Scenario: Idle, Server: o.Client.Addr, Conns: o.Conns, Sessions: o.Sessions}
	if o.ServerPID > 0 {
		kb, err := readRSS(o.ServerPID)
		if err != nil {
			return nil, err
		}
		res.RSSBeforeKiB = kb
	}
	sessions := make([]*Client, o.Sessions)
	defer closeAll(sessions)
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		workers = make([]Stats, o.Conns)
	)
	start := time.Now()
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := &workers[i]
			cfg := o.Client
			for {
				k := int(next.Add(1) - 1)
				if k >= o.Sessions {
					return
				}
				if ctx.Err() != nil {
					st.Err(ErrNotSent, 1, "the run's time limit struck")
					continue
				}
				t0 := time.Now()
				c, err := Login(ctx, &cfg, o.User(k), o.Password, "i"+rid+"-"+strconv.Itoa(k), base)
				if err != nil {
					st.Err(ErrConnect, 1, err.Error())
					continue
				}
				st.Lat.Record(time.Since(t0))
				sessions[k] = c
			}
		}()
	}
	wg.Wait()
	opened := time.Since(start)
	o.notef("idle: %d sessions opened in %v; holding %v", o.Sessions, opened.Round(time.Millisecond), o.Hold)
	select {
	case <-time.After(o.Hold):
	case <-ctx.Done():
	}
	if o.ServerPID > 0 {
		kb, err := readRSS(o.ServerPID)
		if err != nil {
			return nil, err
		}
		res.RSSAfterKiB = kb
	}
	// Still alive? One ping each, Conns at a time.
	next.Store(0)
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := &workers[i]
			for {
				k := int(next.Add(1) - 1)
				if k >= len(sessions) {
					return
				}
				if c := sessions[k]; c != nil {
					if err := ping(c, o); err != nil {
						st.Err(ErrPing, 1, err.Error())
					} else {
						st.Ops++
					}
				}
			}
		}()
	}
	wg.Wait()
	var total Stats
	for i := range workers {
		total.Merge(&workers[i])
	}
	res.fill(&total, measured{elapsed: opened})
	if n := total.Ops; n > 0 && res.RSSAfterKiB > 0 {
		res.RSSPerSessionKiB = float64(res.RSSAfterKiB-res.RSSBeforeKiB) / float64(o.Sessions)
	}
	return res, nil
}

func ping(c *Client, o *Options) error { return pingDomain(c, o.Client.Domain, o.Timeout) }

// pingDomain pings the server of domain (the one c is logged in to) and waits for its result.
func pingDomain(c *Client, domain string, timeout time.Duration) error {
	_ = c.Conn.SetDeadline(time.Now().Add(timeout))
	defer func() { _ = c.Conn.SetDeadline(time.Time{}) }()
	if err := c.writeNow("<iq type='get' id='idle-ping' to='" + string(appendEscaped(nil, domain)) + "'><ping xmlns='" + nsPing + "'/></iq>"); err != nil {
		return err
	}
	for {
		st, err := c.Sc.Next()
		if err != nil {
			return err
		}
		if string(st.Name) == "iq" && st.ID.Is("idle-ping") {
			if !st.Type.Is("result") {
				return fmt.Errorf("ping: %.300s", st.Raw)
			}
			return nil
		}
	}
}

// readRSS returns VmRSS of a process in KiB.
func readRSS(pid int) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("bench: server RSS: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Bytes()
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			v = bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(v), []byte("kB")))
			return strconv.ParseInt(string(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("bench: no VmRSS in /proc/%d/status", pid)
}
