package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// wsResult is one WebSocket echo run.
type wsResult struct {
	messages int64 // echoes received and checked
	elapsed  time.Duration
}

func (r wsResult) perSecond() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.messages) / r.elapsed.Seconds()
}

// runWSEcho opens conns WebSockets to url and, on each, sends a message of
// size bytes and waits for its echo, again and again, for d. Every echo is
// compared with what was sent. Connections are opened before the clock
// starts.
func runWSEcho(ctx context.Context, url string, conns, size int, d time.Duration) (wsResult, error) {
	dialCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cs := make([]*websocket.Conn, 0, conns)
	defer func() {
		for _, c := range cs {
			c.CloseNow()
		}
	}()
	for range conns {
		c, _, err := websocket.Dial(dialCtx, url, nil)
		if err != nil {
			return wsResult{}, fmt.Errorf("websocket %s: %v", url, err)
		}
		c.SetReadLimit(int64(size) + 1024)
		cs = append(cs, c)
	}

	msg := bytes.Repeat([]byte("x"), size)
	var total atomic.Int64
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	start := time.Now()
	deadline := start.Add(d)
	for i, c := range cs {
		wg.Go(func() {
			m := append([]byte(nil), msg...)
			copy(m, fmt.Sprintf("%d:", i)) // each connection's own content
			for time.Now().Before(deadline) {
				if err := c.Write(runCtx, websocket.MessageBinary, m); err != nil {
					errs <- fmt.Errorf("connection %d: write: %v", i, err)
					return
				}
				_, got, err := c.Read(runCtx)
				if err != nil {
					errs <- fmt.Errorf("connection %d: read: %v", i, err)
					return
				}
				if !bytes.Equal(got, m) {
					errs <- fmt.Errorf("connection %d: the echo differs from the message", i)
					return
				}
				total.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	if err := errors.Join(all...); err != nil {
		return wsResult{}, err
	}
	for _, c := range cs {
		c.Close(websocket.StatusNormalClosure, "")
	}
	cs = nil
	return wsResult{messages: total.Load(), elapsed: elapsed}, nil
}
