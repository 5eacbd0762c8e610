package deploy_test

import (
	"encoding"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// kubeVersion is the Kubernetes release of the k8s.io/api module the
// schemas are generated from (k8s.io/api v0.X.Y is Kubernetes 1.X.Y).
const kubeVersion = "1.37.2"

// schemaLocation is kubeconform's own layout for a schema repository
// (yannh/kubernetes-json-schema), rooted at a local directory.
const schemaLocation = "{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json"

// writeSchemas writes a strict JSON schema for every kind of the API
// groups the manifests use, generated from the official Go API types, into
// dir in the layout schemaLocation describes, and returns the location
// template for kubeconform. The machine cannot download the published
// schemas; these are derived from the same types the API server decodes
// into, so a field the types lack is an unknown field here too.
func writeSchemas(t *testing.T, dir string) string {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme, autoscalingv2.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "v"+kubeVersion+"-standalone-strict")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	n := 0
	for gvk, typ := range scheme.AllKnownTypes() {
		// metav1's option and watch types are registered in every group;
		// only the groups' own resources are manifests.
		if !strings.HasPrefix(typ.PkgPath(), "k8s.io/api/") {
			continue
		}
		g := &schemaGen{t: t, defs: map[string]any{}}
		root := g.object(typ)
		root["properties"].(map[string]any)["apiVersion"] = map[string]any{"type": "string", "enum": []any{gvk.GroupVersion().String()}}
		root["properties"].(map[string]any)["kind"] = map[string]any{"type": "string", "enum": []any{gvk.Kind}}
		req, _ := root["required"].([]string)
		root["required"] = sortedUnique(append(req, "apiVersion", "kind"))
		root["definitions"] = g.defs
		b, err := json.Marshal(root)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, schemaFile(gvk)), b, 0o644); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n == 0 {
		t.Fatal("no schema generated")
	}
	return filepath.Join(dir, schemaLocation)
}

// schemaFile names a kind's schema as kubeconform's KindSuffix does: the
// kind in lower case, the first label of the group, the version.
func schemaFile(gvk schema.GroupVersionKind) string {
	name := strings.ToLower(gvk.Kind)
	if gvk.Group != "" {
		name += "-" + strings.ToLower(strings.Split(gvk.Group, ".")[0])
	}
	return name + "-" + strings.ToLower(gvk.Version) + ".json"
}

// schemaGen turns Go API types into JSON schema (draft 4, kubeconform's
// default): a struct is an object with exactly its json fields
// (additionalProperties false), required where the field's tag has neither
// omitempty nor omitzero, which is how the API types mark a field the
// server cannot do without.
type schemaGen struct {
	t    *testing.T
	defs map[string]any // named struct types, by package path and name
}

var (
	quantityType    = reflect.TypeFor[resource.Quantity]()
	intOrStringType = reflect.TypeFor[intstr.IntOrString]()
	timeType        = reflect.TypeFor[metav1.Time]()
	microTimeType   = reflect.TypeFor[metav1.MicroTime]()
	durationType    = reflect.TypeFor[metav1.Duration]()
	rawType         = reflect.TypeFor[runtime.RawExtension]()
	fieldsType      = reflect.TypeFor[metav1.FieldsV1]()
)

// special holds the types whose JSON form is not their Go structure: they
// marshal themselves.
func special(t reflect.Type) (map[string]any, bool) {
	switch t {
	case quantityType:
		return map[string]any{"type": []any{"string", "number"}}, true
	case intOrStringType:
		return map[string]any{"type": []any{"string", "integer"}}, true
	case timeType, microTimeType, durationType:
		return map[string]any{"type": "string"}, true
	case rawType, fieldsType:
		return map[string]any{"type": "object"}, true
	}
	return nil, false
}

var (
	jsonMarshaler = reflect.TypeFor[json.Marshaler]()
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
)

func (g *schemaGen) of(t reflect.Type) map[string]any {
	if s, ok := special(t); ok {
		return s
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.of(t.Elem())
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string"} // []byte is base64
		}
		return map[string]any{"type": "array", "items": g.of(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.of(t.Elem())}
	case reflect.Interface:
		return map[string]any{}
	case reflect.Struct:
		// "/" would split the JSON pointer of the $ref.
		key := strings.ReplaceAll(t.PkgPath(), "/", ".") + "." + t.Name()
		ref := "#/definitions/" + key
		if _, done := g.defs[key]; !done {
			g.defs[key] = nil // placeholder: a recursive type refers to itself
			g.defs[key] = g.object(t)
		}
		return map[string]any{"$ref": ref}
	}
	g.t.Fatalf("schema: no JSON form for %s (%s)", t, t.Kind())
	return nil
}

// object is a struct's schema: its json fields, inline embeddings merged.
func (g *schemaGen) object(t reflect.Type) map[string]any {
	// A type that marshals itself has a JSON form its fields do not show;
	// each one the API uses is in special, so meeting another is a bug here.
	if t.Implements(jsonMarshaler) || reflect.PointerTo(t).Implements(jsonMarshaler) ||
		t.Implements(textMarshaler) || reflect.PointerTo(t).Implements(textMarshaler) {
		g.t.Fatalf("schema: %s marshals itself; give it a form in special", t)
	}
	props := map[string]any{}
	var required []string
	g.fields(t, props, &required)
	s := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 { // draft 4 forbids an empty required
		s["required"] = sortedUnique(required)
	}
	return s
}

func (g *schemaGen) fields(t reflect.Type, props map[string]any, required *[]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			g.fields(ft, props, required) // ",inline": the fields sit at this level
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		props[name] = g.of(f.Type)
		o := strings.Split(opts, ",")
		if !slices.Contains(o, "omitempty") && !slices.Contains(o, "omitzero") {
			*required = append(*required, name)
		}
	}
}

func sortedUnique(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}
