package llm

import (
	"bufio"
	"errors"
	"io"
	"strings"
)

// SSEEvent is one server-sent event.
type SSEEvent struct {
	Event string // "event:" field; empty for the default "message"
	Data  string // "data:" lines joined by "\n"
	ID    string
}

// errStopSSE ends ReadSSE early without an error.
var errStopSSE = errors.New("stop")

// maxSSELine bounds one line of an event stream.
const maxSSELine = 1 << 20

// ReadSSE reads a text/event-stream and calls fn for every event, in
// order. Comment lines (starting with ':', such as Lemonade's ": ping"
// heartbeats) are skipped. An event is dispatched at the blank line that
// ends it; an unfinished event at the end of the stream is dropped, as the
// SSE specification says. ReadSSE returns fn's first error.
func ReadSSE(r io.Reader, fn func(SSEEvent) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxSSELine)
	var (
		ev      SSEEvent
		data    strings.Builder
		hasData bool
	)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if hasData {
				ev.Data = data.String()
				if err := fn(ev); err != nil {
					if errors.Is(err, errStopSSE) {
						return nil
					}
					return err
				}
			}
			ev, hasData = SSEEvent{}, false
			data.Reset()
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			ev.Event = value
		case "data":
			if hasData {
				data.WriteByte('\n')
			}
			data.WriteString(value)
			hasData = true
		case "id":
			if !strings.ContainsRune(value, 0) {
				ev.ID = value
			}
		}
	}
	return sc.Err()
}
