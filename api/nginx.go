package api

import (
	"context"
	"net/http"

	"github.com/thon-dev/thon/sandboxes"
	"github.com/thon-dev/thon/sandboxes/nginx"
)

// NginxOptions configures nginx emission, the /api/nginx/ routes.
type NginxOptions struct {
	// Options are where the site goes, the nginx that checks and loads
	// it, and the server block without its sandboxes.
	nginx.Options
	// Applier writes the site, one write at a time; every face writing
	// the same files must share it (the thon app keeps one across config
	// reloads). Required: without it the routes answer 503.
	Applier *nginx.Applier
}

// nginxRoutes registers the nginx emission routes: what is written, write
// it again for the sandboxes live now, and remove it.
func (s *Server) nginxRoutes() {
	s.handleNginx("GET", "/api/nginx/status", s.nginxStatus)
	s.handleNginx("POST", "/api/nginx/refresh", s.nginxRefresh)
	s.handleNginx("POST", "/api/nginx/cleanup", s.nginxCleanup)
}

// handleNginx registers a route that needs Options.Nginx; without it the
// route answers 503.
func (s *Server) handleNginx(method, pattern string, h handlerFunc) {
	s.handle(method, pattern, func(w http.ResponseWriter, r *http.Request) error {
		if s.nginx == nil || s.nginx.Applier == nil {
			return errorf(http.StatusServiceUnavailable, "", "nginx emission is not configured")
		}
		return h(w, r)
	})
}

func (s *Server) nginxStatus(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, nginx.Inspect(s.nginx.Writer, s.nginx.Bin))
	return nil
}

// nginxRefresh writes the site for the sandboxes live now, checks it with
// nginx -t and reloads nginx. It runs to completion even when the client
// goes away, so that files are never left half written.
func (s *Server) nginxRefresh(w http.ResponseWriter, r *http.Request) error {
	if err := s.decodeOptionalJSON(w, r, &emptyRequest{}); err != nil {
		return err
	}
	if s.sandboxes == nil {
		return errorf(http.StatusServiceUnavailable, "", "sandboxes are not configured")
	}
	ctx := context.WithoutCancel(r.Context())
	live, err := s.liveInstances(ctx)
	if err != nil {
		return err
	}
	res, err := s.nginx.Applier.Apply(ctx, s.nginx.Options, nginx.Locations(live))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) nginxCleanup(w http.ResponseWriter, r *http.Request) error {
	if err := s.decodeOptionalJSON(w, r, &emptyRequest{}); err != nil {
		return err
	}
	res, err := s.nginx.Applier.Cleanup(context.WithoutCancel(r.Context()), s.nginx.Options)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// liveInstances lists every sandbox that is not terminated, page by page.
func (s *Server) liveInstances(ctx context.Context) ([]sandboxes.Instance, error) {
	const perPage = 500
	var all []sandboxes.Instance
	for page := 1; ; page++ {
		list, total, err := s.sandboxes.List(ctx, sandboxes.ListFilter{Page: page, PerPage: perPage})
		if err != nil {
			return nil, err
		}
		all = append(all, list...)
		if len(list) < perPage || len(all) >= total {
			return all, nil
		}
	}
}
