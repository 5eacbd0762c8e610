package config

import (
	"net/url"

	"go.yaml.in/yaml/v3"
)

// Public returns the effective config (defaults applied) as plain maps and
// slices keyed by the YAML names, ready for JSON, with secrets redacted:
// the admin token file's and redis password file's paths are replaced by "(redacted)", and any user
// info in a URL is dropped.
func (c *Config) Public() (map[string]any, error) {
	cp := *c
	if cp.Admin.TokenFile != "" {
		cp.Admin.TokenFile = "(redacted)"
	}
	if cp.Redis != nil && cp.Redis.PasswordFile != "" {
		r := *cp.Redis
		r.PasswordFile = "(redacted)"
		cp.Redis = &r
	}
	cp.Tracing.Endpoint = withoutUserinfo(cp.Tracing.Endpoint)
	if cp.TLS != nil && cp.TLS.ACME != nil {
		t, a := *cp.TLS, *cp.TLS.ACME
		a.CA = withoutUserinfo(a.CA)
		t.ACME = &a
		cp.TLS = &t
	}
	return Plain(&cp)
}

// Plain returns a config value (a *Config, a *Fault, ...) as plain maps and
// slices keyed by its YAML names, ready for JSON: durations in Go syntax
// ("250ms"), as a user writes them. A nil pointer gives nil.
func Plain(v any) (map[string]any, error) {
	b, err := yaml.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}

func withoutUserinfo(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	u.User = nil
	return u.String()
}
