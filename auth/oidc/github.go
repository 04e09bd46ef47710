package oidc

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/oauth2"
)

// githubIdentity reads the user behind tok from GitHub's REST API: GET
// /user for the id, login and name, GET /user/emails for the primary
// address and whether GitHub has verified it.
func (p *Provider) githubIdentity(ctx context.Context, tok *oauth2.Token) (Identity, error) {
	var user struct {
		ID    int64  `json:"id"`
		Login string `json:"login"`
		Name  string `json:"name"`
	}
	if err := p.githubGet(ctx, tok, "/user", &user); err != nil {
		return Identity{}, err
	}
	if user.ID <= 0 || user.Login == "" {
		return Identity{}, fmt.Errorf("%s: %w: /user gave no id or login", p.cfg.Name, ErrProfile)
	}
	var emails []struct {
		Email    string `json:"email"`
		Primary  bool   `json:"primary"`
		Verified bool   `json:"verified"`
	}
	if err := p.githubGet(ctx, tok, "/user/emails", &emails); err != nil {
		return Identity{}, err
	}
	id := Identity{
		Provider: p.cfg.Name,
		Kind:     KindGitHub,
		Subject:  strconv.FormatInt(user.ID, 10),
		Login:    user.Login,
		Name:     strings.TrimSpace(user.Name),
	}
	for _, e := range emails {
		if e.Primary {
			id.Email, id.EmailVerified = strings.TrimSpace(e.Email), e.Verified && strings.TrimSpace(e.Email) != ""
			break
		}
	}
	return id, nil
}

// githubGet GETs path of GitHub's API into v.
func (p *Provider) githubGet(ctx context.Context, tok *oauth2.Token, path string, v any) error {
	u := strings.TrimSuffix(p.cfg.GitHubAPIURL, "/") + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("%s: %w: %s: %w", p.cfg.Name, ErrUnavailable, u, err)
	}
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	req.Header.Set("User-Agent", "thon")
	resp, err := p.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %s: %w", p.cfg.Name, path, ctx.Err())
		}
		return fmt.Errorf("%s: %w: %s: %w", p.cfg.Name, ErrUnavailable, u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s: %w: %s: %w", p.cfg.Name, ErrUnavailable, u, err)
	}
	switch {
	case resp.StatusCode >= 500:
		return fmt.Errorf("%s: %w: %s answered %s", p.cfg.Name, ErrUnavailable, u, resp.Status)
	case resp.StatusCode != http.StatusOK:
		var e struct {
			Message string `json:"message"`
		}
		json.Unmarshal(body, &e)
		return fmt.Errorf("%s: %w: %s answered %s %s", p.cfg.Name, ErrProfile, path, resp.Status, quoteShort(e.Message))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s: %w: %s: %w", p.cfg.Name, ErrProfile, path, err)
	}
	return nil
}
