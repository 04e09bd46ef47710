package api

import (
	"net/http"
	"time"

	"github.com/thon-dev/thon/gateway"
	"github.com/thon-dev/thon/store"
)

// gatewayRoutes registers the AI gateway routes: setup, consumers, keys,
// status, cleanup and usage.
func (s *Server) gatewayRoutes() {
	s.handleGateway("POST", "/api/gateway/setup", s.gatewaySetup)
	s.handleGateway("GET", "/api/gateway/status", s.gatewayStatus)
	s.handleGateway("GET", "/api/gateway/consumers", s.listConsumers)
	s.handleGateway("POST", "/api/gateway/consumers", s.createConsumer)
	s.handleGateway("DELETE", "/api/gateway/consumers/{username}", s.deleteConsumer)
	s.handleGateway("POST", "/api/gateway/consumers/{username}/rotate", s.rotateConsumer)
	s.handleGateway("POST", "/api/gateway/consumers/{username}/revoke", s.revokeConsumer)
	s.handleGateway("POST", "/api/gateway/cleanup", s.gatewayCleanup)
	s.handleGateway("GET", "/api/gateway/usage", s.gatewayUsage)
}

// handleGateway registers a route that needs Options.Gateway; without it
// the route answers 503.
func (s *Server) handleGateway(method, pattern string, h handlerFunc) {
	s.handle(method, pattern, func(w http.ResponseWriter, r *http.Request) error {
		if s.gateway == nil {
			return errorf(http.StatusServiceUnavailable, "", "the AI gateway is not configured")
		}
		return h(w, r)
	})
}

// gatewaySetup turns the gateway on with a consumer mode and limits, and
// gives every user (or group) of the roster a consumer with a new key.
func (s *Server) gatewaySetup(w http.ResponseWriter, r *http.Request) error {
	var req gateway.SetupRequest
	if err := s.decodeOptionalJSON(w, r, &req); err != nil {
		return err
	}
	out, err := s.gateway.Setup(r.Context(), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) gatewayStatus(w http.ResponseWriter, r *http.Request) error {
	out, err := s.gateway.Status(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// consumerList is the answer of GET /api/gateway/consumers.
type consumerList struct {
	Consumers []gateway.ConsumerView `json:"consumers"`
}

// listConsumers lists the consumers, without their keys.
func (s *Server) listConsumers(w http.ResponseWriter, r *http.Request) error {
	cs, err := s.gateway.Consumers(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, consumerList{Consumers: cs})
	return nil
}

// createConsumer adds one consumer with a new key shown once.
func (s *Server) createConsumer(w http.ResponseWriter, r *http.Request) error {
	var req gateway.CreateRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	out, err := s.gateway.CreateConsumer(r.Context(), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

// deletedConsumer answers DELETE /api/gateway/consumers/{username}.
type deletedConsumer struct {
	Deleted gateway.ConsumerView `json:"deleted"`
}

func (s *Server) deleteConsumer(w http.ResponseWriter, r *http.Request) error {
	c, err := s.gateway.DeleteConsumer(r.Context(), r.PathValue("username"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, deletedConsumer{Deleted: c})
	return nil
}

// rotateConsumer gives a consumer a new key (shown once).
func (s *Server) rotateConsumer(w http.ResponseWriter, r *http.Request) error {
	if err := s.decodeOptionalJSON(w, r, &emptyRequest{}); err != nil {
		return err
	}
	out, err := s.gateway.RotateConsumer(r.Context(), r.PathValue("username"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// revokeConsumer disables a consumer's key.
func (s *Server) revokeConsumer(w http.ResponseWriter, r *http.Request) error {
	if err := s.decodeOptionalJSON(w, r, &emptyRequest{}); err != nil {
		return err
	}
	c, err := s.gateway.RevokeConsumer(r.Context(), r.PathValue("username"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, c)
	return nil
}

// gatewayCleaned answers POST /api/gateway/cleanup.
type gatewayCleaned struct {
	Deleted int `json:"deleted"`
}

// gatewayCleanup turns the gateway off and deletes every consumer.
func (s *Server) gatewayCleanup(w http.ResponseWriter, r *http.Request) error {
	if err := s.decodeOptionalJSON(w, r, &emptyRequest{}); err != nil {
		return err
	}
	n, err := s.gateway.Cleanup(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, gatewayCleaned{Deleted: n})
	return nil
}

// gatewayUsage is the answer of GET /api/gateway/usage.
type gatewayUsage struct {
	From  *time.Time            `json:"from,omitempty"`
	To    *time.Time            `json:"to,omitempty"`
	Usage []store.ConsumerUsage `json:"usage"`
}

// gatewayUsage sums the usage per consumer, for ?from= and ?to= (RFC 3339
// times; default: all) and ?consumer= (default: all).
func (s *Server) gatewayUsage(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var f store.UsageFilter
	var out gatewayUsage
	for _, p := range []struct {
		name string
		dst  *time.Time
		show **time.Time
	}{{"from", &f.From, &out.From}, {"to", &f.To, &out.To}} {
		v := q.Get(p.name)
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return badRequest(p.name, "%s: %q is not an RFC 3339 time such as 2026-05-01T09:00:00Z", p.name, v)
		}
		t = t.UTC()
		*p.dst, *p.show = t, &t
	}
	f.Consumer = q.Get("consumer")
	u, err := s.gateway.Usage(r.Context(), f)
	if err != nil {
		return err
	}
	out.Usage = u
	writeJSON(w, http.StatusOK, out)
	return nil
}
