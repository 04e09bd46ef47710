package store

import (
	"context"
	"database/sql"
	"errors"
	"testing"
)

// These assignments pin the API that other packages code against; a change
// of signature breaks the build here first.
var (
	_ func(context.Context, string) (*Store, error)               = Open
	_ func() error                                                = (*Store)(nil).Close
	_ func() string                                               = (*Store)(nil).Path
	_ func(context.Context) (int, error)                          = (*Store)(nil).SchemaVersion
	_ func() *sql.DB                                              = (*Store)(nil).DB
	_ func(string, string) error                                  = ValidateName
	_ func(string, []byte) (Roster, error)                        = ParseRoster
	_ func(Roster) ([]byte, error)                                = MarshalRoster
	_ func(context.Context, Roster) (ImportResult, error)         = (*Store)(nil).ImportRoster
	_ func(context.Context) (Roster, error)                       = (*Store)(nil).ExportRoster
	_ func(context.Context) ([]Group, error)                      = (*Store)(nil).ListGroups
	_ func(context.Context, string) (Group, error)                = (*Store)(nil).GetGroup
	_ func(context.Context, string, string) (Group, error)        = (*Store)(nil).CreateGroup
	_ func(context.Context, string, GroupUpdate) (Group, error)   = (*Store)(nil).UpdateGroup
	_ func(context.Context, string) (Group, error)                = (*Store)(nil).DeleteGroup
	_ func(context.Context, string, RosterUser) (User, error)     = (*Store)(nil).AddUser
	_ func(context.Context, string, string) (User, error)         = (*Store)(nil).GetUser
	_ func(context.Context, int64) (User, error)                  = (*Store)(nil).GetUserByID
	_ func(context.Context) ([]User, error)                       = (*Store)(nil).ListUsers
	_ func(context.Context, string, string) (User, error)         = (*Store)(nil).DeleteUser
	_ func(context.Context, string, string, string) (User, error) = (*Store)(nil).TransferUser
	_ func() []string                                             = ConfigKeys
	_ func(context.Context) ([]ConfigFile, error)                 = (*Store)(nil).ConfigFiles
	_ func(context.Context, string) (ConfigFile, error)           = (*Store)(nil).ConfigFile
	_ func(context.Context, string, string) (ConfigFile, error)   = (*Store)(nil).PutConfigFile
	_ func(context.Context, string) error                         = (*Store)(nil).DeleteConfigFile
	_ func(context.Context, string, string) (Resolved, error)     = (*Store)(nil).ResolveConfig
	_ func(context.Context, string) (string, bool, error)         = (*Store)(nil).Setting
	_ func(context.Context, string, string) error                 = (*Store)(nil).SetSetting
	_ func(context.Context, string, string, string, string) error = (*Store)(nil).Audit
	_ func(context.Context, int) ([]AuditEntry, error)            = (*Store)(nil).ListAudit
	_ func(context.Context, string) context.Context               = WithActor
	_ func(string, string) string                                 = DerivedName
	_ func(context.Context) error                                 = (*Store)(nil).CheckDerivedNames
	_ error                                                       = (*NameClashError)(nil)
	_ error                                                       = (*FieldError)(nil)
	_                                                             = Resolved{Key: "", Content: "", Source: ""}
	_                                                             = AuditEntry{ID: 0, Actor: "", Action: "", Target: "", Detail: ""}
	_                                                             = FieldError{Field: "", Msg: ""}
	_                                                             = KeyGroupsYAML + KeyKiloJSON + KeyVSCodeSettings
	_ func(context.Context, string) ([]User, error)               = (*Store)(nil).UsersByEmail
)

func TestErrorValues(t *testing.T) {
	if ErrNotFound.Error() != "not found" || ErrConflict.Error() != "conflict" {
		t.Errorf("sentinel texts: %q %q", ErrNotFound, ErrConflict)
	}
	fe := &FieldError{Field: "name", Msg: "must not be empty"}
	if fe.Error() != "name: must not be empty" {
		t.Errorf("FieldError.Error() = %q", fe.Error())
	}
	var target *FieldError
	if !errors.As(error(fe), &target) {
		t.Error("errors.As fails on *FieldError")
	}
}
