package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Roster is the content of a groups file: the original groups.yaml, or the
// flat groups section of a thon.yaml.
type Roster struct {
	EventID string        `json:"event_id,omitempty"`
	Title   string        `json:"title,omitempty"`
	Groups  []RosterGroup `json:"groups"`
}

// RosterGroup is one group of a Roster.
type RosterGroup struct {
	Name  string `json:"name"`
	Title string `json:"title,omitempty"`
	// Shared, when set, says whether the members may open each other's
	// sandboxes (the group key "shared"); nil leaves a group as it is.
	Shared *bool        `json:"shared,omitempty"`
	Users  []RosterUser `json:"users"`
}

// RosterUser is one user of a RosterGroup.
type RosterUser struct {
	Name  string `json:"name"`
	Email string `json:"email,omitempty"`
}

// ParseRoster parses a groups file. Two forms are accepted, as in the
// original project:
//
//	event_id: hackathon-2025-spring      # optional
//	title: "Spring Hackathon 2025"       # optional
//	groups:
//	  alpha:
//	    title: "Team Alpha"              # optional
//	    users:
//	      - alice                        # a name, or
//	      - name: bob                    # a mapping with name (or username)
//	        email: bob@example.com       # and an optional email
//	  gamma:                             # a group without users
//
// and the flat form of thon.yaml, `groups: {alpha: [alice, bob]}`. Other
// top-level keys (those of a whole thon.yaml) are ignored; inside groups,
// unknown keys are errors. Groups keep the order of the file. Every name is
// validated (see ValidateName); duplicate groups and duplicate users in a
// group are errors. Errors are *FieldError values whose Msg starts with
// "<filename>:<line>: "; filename is used only in messages.
func ParseRoster(filename string, data []byte) (r Roster, err error) {
	p := &rosterParser{file: filename}
	defer func() {
		// the YAML library must not take the caller down on hostile input
		if v := recover(); v != nil {
			r, err = Roster{}, p.errorf(0, "", "cannot parse YAML: %v", v)
		}
	}()
	return p.parse(data)
}

type rosterParser struct {
	file string
}

// errorf returns a *FieldError located at line of the file.
func (p *rosterParser) errorf(line int, field, format string, args ...any) *FieldError {
	loc := p.file
	if loc == "" {
		loc = "<input>"
	}
	if line > 0 {
		loc += ":" + strconv.Itoa(line)
	}
	what := fmt.Sprintf(format, args...)
	return &FieldError{Field: field, Msg: loc + ": " + what, loc: loc, what: what}
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (p *rosterParser) parse(data []byte) (Roster, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return Roster{}, p.errorf(0, "", "empty file: expected a mapping with a \"groups\" key")
		}
		return Roster{}, p.yamlError(data, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return Roster{}, p.errorf(extra.Line, "", "more than one YAML document")
	} else if !errors.Is(err, io.EOF) {
		return Roster{}, p.yamlError(data, err)
	}

	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return Roster{}, p.errorf(0, "", "empty file: expected a mapping with a \"groups\" key")
		}
		root = root.Content[0]
	}
	root = deref(root)
	if root.Kind != yaml.MappingNode {
		return Roster{}, p.errorf(root.Line, "", "expected a mapping with a \"groups\" key, got %s", describe(root))
	}

	r := Roster{Groups: []RosterGroup{}}
	seen := map[string]int{}
	var groups *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := deref(root.Content[i]), deref(root.Content[i+1])
		switch k.Value {
		case "groups", "event_id", "title":
		default:
			continue // another section of a thon.yaml
		}
		if first, dup := seen[k.Value]; dup {
			return Roster{}, p.errorf(k.Line, k.Value, "duplicate key %q (first at line %d)", k.Value, first)
		}
		seen[k.Value] = k.Line
		switch k.Value {
		case "groups":
			groups = v
		case "event_id":
			s, err := p.text(v, "event_id", "event id")
			if err != nil {
				return Roster{}, err
			}
			r.EventID = s
		case "title":
			s, err := p.text(v, "title", "title")
			if err != nil {
				return Roster{}, err
			}
			r.Title = s
		}
	}
	if groups == nil {
		return Roster{}, p.errorf(root.Line, "groups", "no \"groups\" key at the top level")
	}
	switch {
	case isNull(groups):
		return r, nil
	case groups.Kind != yaml.MappingNode:
		return Roster{}, p.errorf(groups.Line, "groups", "expected a mapping of group names, got %s", describe(groups))
	}
	groupLine := map[string]int{}
	for i := 0; i+1 < len(groups.Content); i += 2 {
		k, v := deref(groups.Content[i]), deref(groups.Content[i+1])
		field := "groups." + k.Value
		if k.Kind != yaml.ScalarNode {
			return Roster{}, p.errorf(k.Line, "groups", "a group name must be a string, got %s", describe(k))
		}
		if msg := nameProblem("group", k.Value); msg != "" {
			return Roster{}, p.errorf(k.Line, field, "%s", msg)
		}
		if first, dup := groupLine[k.Value]; dup {
			return Roster{}, p.errorf(k.Line, field, "duplicate group %q (first at line %d)", k.Value, first)
		}
		groupLine[k.Value] = k.Line
		g, err := p.group(k.Value, v)
		if err != nil {
			return Roster{}, err
		}
		r.Groups = append(r.Groups, g)
	}
	return r, nil
}

// group parses the value of groups.<name>.
func (p *rosterParser) group(name string, v *yaml.Node) (RosterGroup, error) {
	field := "groups." + name
	g := RosterGroup{Name: name, Users: []RosterUser{}}
	switch {
	case isNull(v):
		return g, nil
	case v.Kind == yaml.SequenceNode:
		// flat form: groups.<name> is the list of users
		users, err := p.users(field, v)
		g.Users = users
		return g, err
	case v.Kind != yaml.MappingNode:
		return g, p.errorf(v.Line, field, "expected a mapping (title, users), a list of users or nothing, got %s", describe(v))
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := deref(v.Content[i]), deref(v.Content[i+1])
		if first, dup := seen[k.Value]; dup {
			return g, p.errorf(k.Line, field+"."+k.Value, "duplicate key %q (first at line %d)", k.Value, first)
		}
		seen[k.Value] = k.Line
		switch k.Value {
		case "title":
			s, err := p.text(val, field+".title", "title")
			if err != nil {
				return g, err
			}
			g.Title = s
		case "shared":
			var b bool
			if val.Kind != yaml.ScalarNode || val.Decode(&b) != nil {
				return g, p.errorf(val.Line, field+".shared", "expected true or false, got %s", describe(val))
			}
			g.Shared = &b
		case "users":
			switch {
			case isNull(val):
			case val.Kind == yaml.SequenceNode:
				users, err := p.users(field+".users", val)
				if err != nil {
					return g, err
				}
				g.Users = users
			default:
				return g, p.errorf(val.Line, field+".users", "expected a list of users, got %s", describe(val))
			}
		default:
			return g, p.errorf(k.Line, field+"."+k.Value, "unknown key %q in group %q (allowed: title, shared, users)", k.Value, name)
		}
	}
	return g, nil
}

// users parses a list of user entries; field is the path of the list.
func (p *rosterParser) users(field string, list *yaml.Node) ([]RosterUser, error) {
	users := []RosterUser{}
	seen := map[string]int{}
	for i, item := range list.Content {
		item = deref(item)
		f := fmt.Sprintf("%s[%d]", field, i)
		u, err := p.user(f, item)
		if err != nil {
			return nil, err
		}
		if first, dup := seen[u.Name]; dup {
			return nil, p.errorf(item.Line, f, "duplicate user %q (first at line %d)", u.Name, first)
		}
		seen[u.Name] = item.Line
		users = append(users, u)
	}
	return users, nil
}

// user parses one user entry: a name, or a mapping with name or username
// and an optional email.
func (p *rosterParser) user(field string, v *yaml.Node) (RosterUser, error) {
	switch {
	case v.Kind == yaml.ScalarNode && !isNull(v):
		name, err := p.name(field, v)
		return RosterUser{Name: name}, err
	case v.Kind != yaml.MappingNode:
		return RosterUser{}, p.errorf(v.Line, field, "expected a user name or a mapping with name and email, got %s", describe(v))
	}
	var u RosterUser
	var nameNode *yaml.Node
	seen := map[string]int{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := deref(v.Content[i]), deref(v.Content[i+1])
		if first, dup := seen[k.Value]; dup {
			return u, p.errorf(k.Line, field+"."+k.Value, "duplicate key %q (first at line %d)", k.Value, first)
		}
		seen[k.Value] = k.Line
		switch k.Value {
		case "name", "username":
			if nameNode != nil {
				return u, p.errorf(k.Line, field+"."+k.Value, "both name and username given; use one")
			}
			nameNode = val
			name, err := p.name(field+"."+k.Value, val)
			if err != nil {
				return u, err
			}
			u.Name = name
		case "email":
			if isNull(val) {
				continue
			}
			if !isString(val) {
				return u, p.errorf(val.Line, field+".email", "expected an email address, got %s", describe(val))
			}
			if msg := emailProblem(val.Value); msg != "" {
				return u, p.errorf(val.Line, field+".email", "%s", msg)
			}
			u.Email = val.Value
		default:
			return u, p.errorf(k.Line, field+"."+k.Value, "unknown key %q in user entry (allowed: name or username, email)", k.Value)
		}
	}
	if nameNode == nil {
		return u, p.errorf(v.Line, field, "user entry has no \"name\" (or \"username\")")
	}
	return u, nil
}

// name reads a user name from a scalar.
func (p *rosterParser) name(field string, v *yaml.Node) (string, error) {
	if v.Kind != yaml.ScalarNode || isNull(v) || (v.ShortTag() != "!!str" && v.ShortTag() != "!!int") {
		return "", p.errorf(v.Line, field, "expected a user name, got %s", describe(v))
	}
	if msg := nameProblem("user", v.Value); msg != "" {
		return "", p.errorf(v.Line, field, "%s", msg)
	}
	return v.Value, nil
}

// text reads a title or event id from a scalar; null is "".
func (p *rosterParser) text(v *yaml.Node, field, what string) (string, error) {
	if isNull(v) {
		return "", nil
	}
	if v.Kind != yaml.ScalarNode {
		return "", p.errorf(v.Line, field, "expected a string, got %s", describe(v))
	}
	if msg := textProblem(what, v.Value); msg != "" {
		return "", p.errorf(v.Line, field, "%s", msg)
	}
	return v.Value, nil
}

// yamlError converts an error of the YAML library into a *FieldError.
func (p *rosterParser) yamlError(data []byte, err error) *FieldError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		msg = m[2]
		if lines := bytes.Split(data, []byte{'\n'}); line >= 1 && line <= len(lines) &&
			bytes.ContainsRune(lines[line-1], '\t') {
			msg += " (YAML does not allow tabs for indentation)"
		}
		return p.errorf(line, "", "%s", msg)
	}
	return p.errorf(0, "", "%s", msg)
}

// deref follows an alias to the node it names.
func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func isString(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str"
}

// describe names the kind of a node for error messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "nothing (null)"
		case "!!bool":
			return fmt.Sprintf("a boolean (%s)", n.Value)
		case "!!int", "!!float":
			return fmt.Sprintf("a number (%s)", n.Value)
		case "!!str":
			return fmt.Sprintf("a string (%q)", n.Value)
		default:
			return fmt.Sprintf("a %s value", n.ShortTag())
		}
	default:
		return "an unexpected YAML node"
	}
}

// MarshalRoster writes r in the original groups.yaml form: event_id and
// title when set, then groups.<name>.title (when set) and users, each a
// plain name or, when an email is set, a mapping {name, email}. For any
// roster that ParseRoster returned, ParseRoster(MarshalRoster(r)) equals r.
func MarshalRoster(r Roster) ([]byte, error) {
	str := func(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }
	mapping := func() *yaml.Node { return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"} }
	add := func(m *yaml.Node, k string, v *yaml.Node) { m.Content = append(m.Content, str(k), v) }

	root := mapping()
	if r.EventID != "" {
		add(root, "event_id", str(r.EventID))
	}
	if r.Title != "" {
		add(root, "title", str(r.Title))
	}
	groups := mapping()
	for _, g := range r.Groups {
		gn := mapping()
		if g.Title != "" {
			add(gn, "title", str(g.Title))
		}
		if g.Shared != nil {
			add(gn, "shared", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(*g.Shared)})
		}
		users := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		for _, u := range g.Users {
			if u.Email == "" {
				users.Content = append(users.Content, str(u.Name))
				continue
			}
			un := mapping()
			add(un, "name", str(u.Name))
			add(un, "email", str(u.Email))
			users.Content = append(users.Content, un)
		}
		add(gn, "users", users)
		add(groups, g.Name, gn)
	}
	add(root, "groups", groups)

	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{root}}); err != nil {
		return nil, fmt.Errorf("marshal groups: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("marshal groups: %w", err)
	}
	return buf.Bytes(), nil
}

// validateRoster checks a roster that did not come from ParseRoster (such as
// a JSON body), with fields named like "groups[1].users[0].name".
func validateRoster(r Roster) error {
	if err := validateText("event_id", "event id", r.EventID); err != nil {
		return err
	}
	if err := validateText("title", "title", r.Title); err != nil {
		return err
	}
	groups := map[string]bool{}
	for i, g := range r.Groups {
		gf := fmt.Sprintf("groups[%d]", i)
		if msg := nameProblem("group", g.Name); msg != "" {
			return &FieldError{Field: gf + ".name", Msg: msg}
		}
		if groups[g.Name] {
			return &FieldError{Field: gf + ".name", Msg: fmt.Sprintf("duplicate group %q", g.Name)}
		}
		groups[g.Name] = true
		if err := validateText(gf+".title", "title", g.Title); err != nil {
			return err
		}
		users := map[string]bool{}
		for j, u := range g.Users {
			uf := fmt.Sprintf("%s.users[%d]", gf, j)
			if msg := nameProblem("user", u.Name); msg != "" {
				return &FieldError{Field: uf + ".name", Msg: msg}
			}
			if users[u.Name] {
				return &FieldError{Field: uf + ".name", Msg: fmt.Sprintf("duplicate user %q in group %q", u.Name, g.Name)}
			}
			users[u.Name] = true
			if err := validateEmail(uf+".email", u.Email); err != nil {
				return err
			}
		}
	}
	return nil
}
