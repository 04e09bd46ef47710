package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/thon-dev/thon/sandboxes"
	"github.com/thon-dev/thon/sandboxes/nginx"
)

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
		if s.nginx == nil {
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
	res, err := ApplyNginx(ctx, *s.nginx, NginxLocations(live))
	if err != nil {
		return nginxHTTPError(err)
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) nginxCleanup(w http.ResponseWriter, r *http.Request) error {
	if err := s.decodeOptionalJSON(w, r, &emptyRequest{}); err != nil {
		return err
	}
	res, err := CleanupNginx(context.WithoutCancel(r.Context()), *s.nginx)
	if err != nil {
		return nginxHTTPError(err)
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

// nginxHTTPError maps an error of ApplyNginx or CleanupNginx to its
// response: nginx refusing or failing is 502 with nginx's own message;
// anything else (a site that cannot be rendered from thon's configuration,
// a file in the way) is a 500 that says why. Either way the organiser
// reads what to fix.
func nginxHTTPError(err error) error {
	var he *httpError
	var se *NginxStepError
	var fe *nginx.FieldError
	switch {
	case errors.As(err, &he):
		return err
	case errors.As(err, &se):
		return errorf(http.StatusBadGateway, "", "%s", se.Error())
	case errors.As(err, &fe):
		return errorf(http.StatusInternalServerError, fe.Field, "nginx site: %s", fe.Error())
	}
	return errorf(http.StatusInternalServerError, "", "nginx: %v", err)
}
