package store

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxNameLen is the length limit of a DNS label.
const maxNameLen = 63

// maxTextLen bounds titles and event ids.
const maxTextLen = 200

// maxEmailLen is the length limit of an email address (RFC 5321 path).
const maxEmailLen = 254

// ValidateName checks that name is a DNS label, the rule for group and user
// names (they become container, volume and host names): 1 to 63 characters
// of a-z, 0-9 and '-', not starting or ending with '-'. Uppercase letters
// are refused, with a hint, rather than lowered. The error is a *FieldError
// for field.
func ValidateName(field, name string) error {
	if msg := nameProblem("", name); msg != "" {
		return &FieldError{Field: field, Msg: msg}
	}
	return nil
}

// nameProblem describes what is wrong with name, or returns "". kind
// ("group", "user" or "") is used in the message.
func nameProblem(kind, name string) string {
	what := "name"
	if kind != "" {
		what = kind + " name"
	}
	if name == "" {
		return what + " must not be empty"
	}
	bad := func(why string) string {
		return fmt.Sprintf("invalid %s %q: %s", what, name, why)
	}
	if len(name) > maxNameLen {
		return bad(fmt.Sprintf("longer than %d characters", maxNameLen))
	}
	for i, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
		case r >= 'A' && r <= 'Z':
			lower := strings.ToLower(name)
			if nameProblem(kind, lower) == "" {
				return bad(fmt.Sprintf("uppercase letters are not allowed (use %q)", lower))
			}
			return bad(fmt.Sprintf("uppercase letter %q at position %d; names are lowercase DNS labels (a-z, 0-9, '-')", r, i+1))
		default:
			return bad(fmt.Sprintf("character %q at position %d is not allowed; names are lowercase DNS labels (a-z, 0-9, '-')", r, i+1))
		}
	}
	if name[0] == '-' || name[len(name)-1] == '-' {
		return bad("must not start or end with '-'")
	}
	return ""
}

// emailProblem describes what is wrong with a non-empty email, or returns "".
func emailProblem(email string) string {
	if email == "" {
		return ""
	}
	if len(email) > maxEmailLen {
		return fmt.Sprintf("invalid email %q: longer than %d characters", email, maxEmailLen)
	}
	at := strings.LastIndexByte(email, '@')
	if at <= 0 || at == len(email)-1 {
		return fmt.Sprintf("invalid email %q: must look like name@domain", email)
	}
	if !utf8.ValidString(email) || strings.IndexFunc(email, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r)
	}) >= 0 {
		return fmt.Sprintf("invalid email %q: must not contain spaces or control characters", email)
	}
	return ""
}

// textProblem describes what is wrong with a title or event id, or returns "".
func textProblem(what, s string) string {
	if !utf8.ValidString(s) {
		return what + " is not valid UTF-8"
	}
	if n := utf8.RuneCountInString(s); n > maxTextLen {
		return fmt.Sprintf("%s is longer than %d characters", what, maxTextLen)
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return fmt.Sprintf("%s %q must not contain control characters (such as line breaks)", what, s)
	}
	return ""
}

func validateEmail(field, email string) error {
	if msg := emailProblem(email); msg != "" {
		return &FieldError{Field: field, Msg: msg}
	}
	return nil
}

func validateText(field, what, s string) error {
	if msg := textProblem(what, s); msg != "" {
		return &FieldError{Field: field, Msg: msg}
	}
	return nil
}
