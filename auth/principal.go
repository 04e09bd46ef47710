package auth

import (
	"context"

	"github.com/thon-dev/thon/store"
)

// Kind is what a principal may be.
type Kind string

// Kinds of principal.
const (
	// KindOrganiser may do everything.
	KindOrganiser Kind = store.SessionOrganiser
	// KindParticipant may use what is theirs: their sandbox, their
	// gateway key, their page.
	KindParticipant Kind = store.SessionParticipant
)

// Method is how a principal proved who they are.
type Method string

// Methods of proof.
const (
	// MethodPassword is AUTH_LOCAL_PASSWORD or an organiser's own password
	// (the setup link sets it).
	MethodPassword Method = "password"
	// MethodToken is an organiser API token (Authorization: Bearer).
	MethodToken Method = "token"
	// MethodOIDC is a login through an identity provider.
	MethodOIDC Method = "oidc"
	// MethodJoinLink is a participant's one-time join link.
	MethodJoinLink Method = "join_link"
	// MethodAdmin is a process on the host, through Caddy's admin
	// endpoint, which is trusted as Caddy's admin API is.
	MethodAdmin Method = "admin"
)

// LocalOrganiser is the name of the organiser who signs in with
// AUTH_LOCAL_PASSWORD.
const LocalOrganiser = "local"

// Principal is who a request is. The zero Principal is nobody: a request
// without credentials.
type Principal struct {
	// Kind is organiser or participant; empty for nobody.
	Kind Kind `json:"kind"`
	// Name is an organiser's login, token name or email, or a
	// participant's user name.
	Name string `json:"name"`
	// UserID and Group are a participant's user id and group name. Check
	// ownership by UserID: it follows the user through transfers.
	UserID int64  `json:"user_id,omitempty"`
	Group  string `json:"group,omitempty"`
	// Method is how they proved it.
	Method Method `json:"method"`
	// Session is the handle of the session the request came with, if any:
	// the hex SHA-256 of its id, which never gives the id away. Empty for
	// API tokens and the admin endpoint.
	Session string `json:"session,omitempty"`
}

// IsOrganiser reports whether p is an organiser.
func (p Principal) IsOrganiser() bool { return p.Kind == KindOrganiser }

// IsParticipant reports whether p is a participant.
func (p Principal) IsParticipant() bool { return p.Kind == KindParticipant }

// Anonymous reports whether p is nobody.
func (p Principal) Anonymous() bool { return p.Kind == "" }

type principalKey struct{}

// WithPrincipal returns ctx carrying p, for the handlers after a check.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal set by WithPrincipal; ok is false when
// none was set.
func FromContext(ctx context.Context) (p Principal, ok bool) {
	p, ok = ctx.Value(principalKey{}).(Principal)
	return p, ok
}
