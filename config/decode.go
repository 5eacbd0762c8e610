package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Load reads the config file at path, then decodes and validates it as Parse
// does. A file that cannot be read is reported as a wrapped error, not as
// Errors, since there is no position to point at.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes data as a sluice config, applies the documented defaults and
// validates the result. name is used in error messages and stored in
// Config.File. On failure it returns nil and an Errors value holding every
// problem found, sorted by position.
//
// Decoding is strict: unknown keys, duplicate keys and values of the wrong
// YAML type are errors. Validation runs only when decoding found nothing,
// because checks on a half-decoded config mostly repeat the first problem.
func Parse(name string, data []byte) (*Config, error) {
	return parse(name, data, systemMemory())
}

// parse is Parse with the environment a percentage server.memory_limit is
// resolved in.
func parse(name string, data []byte, mem memoryEnv) (*Config, error) {
	cfg := Default()
	cfg.File = name
	cfg.pos = positions{}
	d := &decoder{file: name, pos: cfg.pos, maxVisits: maxVisits}
	d.document(data, cfg)
	errs := d.errs
	if len(errs) == 0 {
		errs = cfg.validate(mem)
	}
	if len(errs) > 0 {
		errs.sort()
		return nil, errs
	}
	return cfg, nil
}

// YAML core-schema tags, as returned by yaml.Node.ShortTag.
const (
	strTag       = "!!str"
	intTag       = "!!int"
	floatTag     = "!!float"
	boolTag      = "!!bool"
	nullTag      = "!!null"
	timestampTag = "!!timestamp"
	binaryTag    = "!!binary"
	mergeTag     = "!!merge"
)

// durationHint ends every duration error: Go syntax is the only form accepted.
const durationHint = "use Go syntax such as 250ms or 30s"

// maxVisits bounds the values one decode may visit. The walk follows the Go
// types, so alias cycles cannot make it loop, but aliases can still make a
// small file name the same large subtree many times over ("billion laughs").
const maxVisits = 1 << 20

var (
	durationType    = reflect.TypeFor[time.Duration]()
	memoryLimitType = reflect.TypeFor[MemoryLimit]()
)

// decoder walks a yaml.Node tree against the config structs, collecting
// every problem with its position rather than stopping at the first.
type decoder struct {
	file      string
	pos       positions // where each written key path was found
	errs      Errors
	maxVisits int  // see the maxVisits constant; lowered in tests
	visits    int  // values visited so far
	stopped   bool // maxVisits was exceeded; decode nothing more
}

func (d *decoder) errorAt(line, col int, format string, args ...any) {
	// yaml.v3 numbers lines and columns from 1; 0 means it had no position.
	d.errs = append(d.errs, &Error{File: d.file, Line: max(line, 1), Col: max(col, 1), Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	d.errorAt(n.Line, n.Column, format, args...)
}

// document parses data and decodes its single document into cfg.
func (d *decoder) document(data []byte, cfg *Config) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.empty()
		} else {
			d.syntaxError(err)
		}
		return
	}
	// A second document usually means two files were concatenated; loading
	// only the first would silently drop the rest. An empty one (a trailing
	// "---") is harmless.
	var extra yaml.Node
	if err := dec.Decode(&extra); err != nil && !errors.Is(err, io.EOF) {
		d.syntaxError(err)
	} else if err == nil && len(extra.Content) == 1 && !isNull(extra.Content[0]) {
		d.errorf(extra.Content[0], "a config file holds one YAML document; found another")
	}

	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		d.empty()
		return
	}
	root := d.resolve(doc.Content[0])
	switch {
	case root == nil:
	case isNull(root):
		d.empty()
	case root.Kind != yaml.MappingNode:
		d.errorf(root, "expected a mapping of keys at top level, got %s", describe(root))
	default:
		d.value("", root, reflect.ValueOf(cfg).Elem())
	}
}

func (d *decoder) empty() {
	d.errorAt(1, 1, "empty config: at least one upstream and one route are required")
}

// yamlLineError matches the errors of yaml.v3's parser and scanner. They
// carry a line but no column, so syntax errors are reported at column 1.
var yamlLineError = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parserProblems are the messages of yaml.v3's parser (parserc.go), as
// opposed to its scanner. go.yaml.in/yaml/v3 v3.0.6, like gopkg.in/yaml.v3
// before it, prints the 0-based line of a parser error (its parser.fail
// adds 1 only for scanner errors), so these get 1 added. Scanner messages
// never repeat these strings.
var parserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

// syntaxError converts a yaml.v3 error to an *Error at its line, column 1.
// An error without a line is put at 1:1: yaml.v3 omits the line when its
// marks are all on the first line, and for the few errors (an unknown
// anchor, say) raised after parsing, which have no position at all.
func (d *decoder) syntaxError(err error) {
	// One problem must stay on one output line.
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if m := yamlLineError.FindStringSubmatch(msg); m != nil {
		if line, convErr := strconv.Atoi(m[1]); convErr == nil {
			if parserProblems[m[2]] {
				line++
			}
			d.errorAt(line, 1, "%s", m[2])
			return
		}
	}
	d.errorAt(1, 1, "%s", strings.TrimPrefix(msg, "yaml: "))
}

// resolve follows alias nodes to the node they name.
func (d *decoder) resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			// yaml.v3 rejects unknown anchors itself; this is only a guard.
			d.errorf(n, "unknown anchor %q", n.Value)
			return nil
		}
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == nullTag
}

// value decodes n into v, which must be settable. path names v in messages
// and in d.pos. A null value leaves v as it is: keys written with no value
// keep their default.
func (d *decoder) value(path string, n *yaml.Node, v reflect.Value) {
	if d.stopped {
		return
	}
	if d.visits++; d.visits > d.maxVisits {
		d.errorf(n, "config too large: more than %d values (check for aliases repeating large blocks)", d.maxVisits)
		d.stopped = true
		return
	}
	if n = d.resolve(n); n == nil || isNull(n) {
		return
	}
	switch v.Type() {
	case durationType:
		d.duration(n, v)
		return
	case memoryLimitType:
		d.memoryLimit(n, v.Addr().Interface().(*MemoryLimit))
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		// An optional block (tls, breaker, rate_limit, ...): written means
		// enabled, starting from its own defaults.
		p := reflect.New(v.Type().Elem())
		setDefaults(p)
		d.mapping(path, n, p.Elem())
		v.Set(p)
	case reflect.Struct:
		// A nested block that always exists; its parent already set its
		// defaults, so keys not written here keep them.
		d.mapping(path, n, v)
	case reflect.Slice:
		d.sequence(path, n, v)
	case reflect.String:
		d.str(n, v)
	case reflect.Int, reflect.Int64: // time.Duration is handled above
		d.integer(n, v)
	case reflect.Float64:
		d.float(n, v)
	case reflect.Bool:
		d.boolean(n, v)
	default:
		// Only reachable if a field of a new type is added to the config.
		panic(fmt.Sprintf("config: no decoder for %s at %s", v.Type(), path))
	}
}

// setDefaults applies the documented defaults to the struct p points to.
func setDefaults(p reflect.Value) {
	if df, ok := p.Interface().(defaulter); ok {
		df.setDefaults()
	}
}

// field is a config key and the index of the struct field it decodes into.
type field struct {
	key   string
	index int
}

// fieldsOf lists the keys of struct type t in declaration order, from the
// `yaml:"key"` tags. Untagged, unexported and `yaml:"-"` fields are not keys.
func fieldsOf(t reflect.Type) []field {
	var fs []field
	for i := range t.NumField() {
		sf := t.Field(i)
		key, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if !sf.IsExported() || key == "" || key == "-" {
			continue
		}
		fs = append(fs, field{key: key, index: i})
	}
	return fs
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// mapping decodes the keys of mapping n into struct v.
func (d *decoder) mapping(path string, n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "expected a mapping, got %s", describe(n))
		return
	}
	fields := fieldsOf(v.Type())
	seen := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		keyNode, valNode := n.Content[i], n.Content[i+1]
		k := d.resolve(keyNode)
		if k == nil {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.errorf(keyNode, "expected a key name, got %s", describe(k))
			continue
		}
		key := k.Value
		// yaml.v3 keeps duplicate keys in a Node tree (it rejects them only
		// when decoding into a map or struct), so check here.
		if first, dup := seen[key]; dup {
			d.errorf(keyNode, "duplicate key %q (first at line %d)", key, first.Line)
			continue
		}
		seen[key] = keyNode
		idx := -1
		for _, f := range fields {
			if f.key == key {
				idx = f.index
				break
			}
		}
		if idx < 0 {
			d.unknownKey(path, keyNode, k, fields)
			continue
		}
		p := joinPath(path, key)
		d.record(p, keyNode, valNode)
		d.value(p, valNode, v.Field(idx))
	}
}

func (d *decoder) unknownKey(path string, keyNode, k *yaml.Node, fields []field) {
	where := "in " + path
	if path == "" {
		where = "at top level"
	}
	known := make([]string, len(fields))
	for i, f := range fields {
		known[i] = f.key
	}
	hint := ""
	if k.ShortTag() == mergeTag {
		hint = "; merge keys are not supported"
	}
	d.errorf(keyNode, "unknown key %s %s (known keys: %s%s)", quoteShort(k.Value), where, strings.Join(known, ", "), hint)
}

// record notes where the value of path was written; see positions for
// which node stands for which kind of value.
func (d *decoder) record(path string, keyNode, valNode *yaml.Node) {
	v := d.resolve(valNode)
	switch {
	case v == nil || isNull(v):
	case valNode.Kind == yaml.ScalarNode || valNode.Kind == yaml.AliasNode:
		d.pos[path] = Pos{Line: valNode.Line, Col: valNode.Column}
	default:
		d.pos[path] = Pos{Line: keyNode.Line, Col: keyNode.Column}
	}
}

// sequence decodes sequence n into slice v, replacing any default. Struct
// elements start from their defaults.
func (d *decoder) sequence(path string, n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, "expected a sequence, got %s", describe(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, el := range n.Content {
		ev := s.Index(i)
		setDefaults(ev.Addr())
		p := fmt.Sprintf("%s[%d]", path, i)
		if r := d.resolve(el); r != nil && !isNull(r) {
			d.pos[p] = Pos{Line: el.Line, Col: el.Column}
		}
		d.value(p, el, ev)
	}
	v.Set(s)
}

func (d *decoder) str(n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != strTag {
		hint := ""
		if n.Kind == yaml.ScalarNode {
			// The usual cause: `listen: 8080` or `host: true`.
			hint = " (quote it)"
		}
		d.errorf(n, "expected a string, got %s%s", describe(n), hint)
		return
	}
	v.SetString(n.Value)
}

var (
	// integerLike matches a plain decimal integer. yaml.v3 tags one too large
	// for 64 bits as !!float; it is reported as out of range, not as a float.
	integerLike = regexp.MustCompile(`^[-+]?[0-9_]+$`)
	// leadingZero matches YAML 1.1 octal such as 010, which yaml.v3 reads as 8
	// while YAML 1.2 readers read 10.
	leadingZero = regexp.MustCompile(`^[-+]?0[0-9_]`)
)

// parseInt parses the value of a scalar tagged !!int (or an integer-like
// !!float) with yaml.v3's syntax: underscores, 0x, 0o and 0b prefixes.
func parseInt(s string) (int64, error) {
	if leadingZero.MatchString(s) {
		return 0, fmt.Errorf("integer %s is ambiguous (write it without the leading 0, or with 0o for octal)", bareShort(s))
	}
	i, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 0, 64)
	if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("integer %s is out of range", bareShort(s))
	}
	if err != nil {
		return 0, fmt.Errorf("bad integer %s", quoteShort(s))
	}
	return i, nil
}

func (d *decoder) integer(n *yaml.Node, v reflect.Value) {
	tag := n.ShortTag()
	if n.Kind != yaml.ScalarNode || !(tag == intTag || tag == floatTag && integerLike.MatchString(n.Value)) {
		d.errorf(n, "expected an integer, got %s", describe(n))
		return
	}
	i, err := parseInt(n.Value)
	if err == nil && v.OverflowInt(i) {
		err = fmt.Errorf("integer %s is out of range", bareShort(n.Value))
	}
	if err != nil {
		d.errorf(n, "%v", err)
		return
	}
	v.SetInt(i)
}

func (d *decoder) float(n *yaml.Node, v reflect.Value) {
	tag := n.ShortTag()
	if n.Kind != yaml.ScalarNode || tag != intTag && tag != floatTag {
		d.errorf(n, "expected a number, got %s", describe(n))
		return
	}
	if tag == intTag {
		i, err := parseInt(n.Value)
		if err != nil {
			d.errorf(n, "%v", err)
			return
		}
		v.SetFloat(float64(i))
		return
	}
	// ParseFloat reads neither YAML's .inf and .nan nor its underscores;
	// infinities and NaN are never meaningful in a sluice config anyway.
	f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
	if err != nil {
		d.errorf(n, "expected a finite number, got %s", describe(n))
		return
	}
	v.SetFloat(f)
}

func (d *decoder) boolean(n *yaml.Node, v reflect.Value) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == boolTag {
		if b, err := strconv.ParseBool(n.Value); err == nil {
			v.SetBool(b)
			return
		}
	}
	// yaml.v3 reads yes/no/on/off as strings; say what it wants instead.
	d.errorf(n, "expected a boolean, got %s (use true or false)", describe(n))
}

// duration decodes a Go duration string such as "250ms". An integer 0 is
// also accepted, since "0" needs no unit; any other number is reported with
// time.ParseDuration's own message about the missing unit.
func (d *decoder) duration(n *yaml.Node, v reflect.Value) {
	tag := n.ShortTag()
	if n.Kind != yaml.ScalarNode || tag != strTag && tag != intTag && tag != floatTag {
		d.errorf(n, "expected a duration, got %s (%s)", describe(n), durationHint)
		return
	}
	dur, err := time.ParseDuration(n.Value)
	if err != nil {
		d.errorf(n, "bad duration %s: %v (%s)", quoteShort(n.Value), err, durationHint)
		return
	}
	v.SetInt(int64(dur))
}

// describe names the YAML type and value of n for messages, such as
// `integer 8080` or `a sequence`.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a sequence"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	switch tag := n.ShortTag(); tag {
	case strTag:
		return "string " + quoteShort(n.Value)
	case intTag:
		return "integer " + bareShort(n.Value)
	case floatTag:
		return "float " + bareShort(n.Value)
	case boolTag:
		return "boolean " + bareShort(n.Value)
	case nullTag:
		return "null"
	case timestampTag:
		return "timestamp " + bareShort(n.Value)
	case binaryTag:
		return "binary data"
	default:
		return quoteShort(tag) + " value " + quoteShort(n.Value)
	}
}

// quoteShort quotes s for a message, cut to a readable length. Quoting also
// keeps a multi-line value on the one line its message must fit on.
func quoteShort(s string) string {
	const maxRunes = 64
	if r := []rune(s); len(r) > maxRunes {
		return strconv.Quote(string(r[:maxRunes]) + "...")
	}
	return strconv.Quote(s)
}

// bareShort is quoteShort without the quotes, for values such as numbers
// that read better bare.
func bareShort(s string) string {
	q := quoteShort(s)
	return q[1 : len(q)-1]
}
