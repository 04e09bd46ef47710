package docker

import (
	"context"
	"strconv"
	"time"

	"github.com/docker/docker/api/types/events"
)

// Event is a change of a container.
type Event struct {
	ID string
	// Name is the container's name, Image the reference it runs.
	Name, Image string
	// Action is the engine's action: "create", "start", "die", "stop",
	// "kill", "pause", "unpause", "destroy", ...
	Action string
	// Labels are the container's labels.
	Labels map[string]string
	// ExitCode is the exit code of the container's main process, for "die".
	ExitCode int
	Time     time.Time
}

// attributes the engine puts next to the labels in an event.
var eventAttributes = map[string]bool{"name": true, "image": true, "exitCode": true, "signal": true, "execID": true}

// Events streams the events of containers that have all the labels of
// labelFilter (an empty value matches any value of the key). The subscription
// is active when Events returns. The event channel is closed when the stream
// ends; the error channel then yields why, which is ctx's error once ctx is
// done.
func (c *Client) Events(ctx context.Context, labelFilter map[string]string) (<-chan Event, <-chan error) {
	args := labelArgs(labelFilter)
	args.Add("type", string(events.ContainerEventType))
	msgs, errs := c.api.Events(ctx, events.ListOptions{Filters: args})

	out := make(chan Event)
	errc := make(chan error, 1)
	go func() {
		defer close(out)
		for {
			select {
			case m := <-msgs:
				ev := Event{
					ID:     m.Actor.ID,
					Name:   m.Actor.Attributes["name"],
					Image:  m.Actor.Attributes["image"],
					Action: string(m.Action),
					Labels: make(map[string]string, len(m.Actor.Attributes)),
					Time:   time.Unix(0, m.TimeNano),
				}
				if code, err := strconv.Atoi(m.Actor.Attributes["exitCode"]); err == nil {
					ev.ExitCode = code
				}
				for k, v := range m.Actor.Attributes {
					if !eventAttributes[k] {
						ev.Labels[k] = v
					}
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					errc <- ctx.Err()
					return
				}
			case err, ok := <-errs:
				if !ok || err == nil {
					err = ctx.Err()
				}
				if ctx.Err() != nil {
					errc <- ctx.Err()
				} else {
					errc <- c.wrap(err, "container events")
				}
				return
			}
		}
	}()
	return out, errc
}
