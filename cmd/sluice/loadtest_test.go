package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadtestUsage(t *testing.T) {
	for name, args := range map[string][]string{
		"no url":          {"-rate", "10", "-duration", "1s"},
		"no duration":     {"-url", "http://127.0.0.1:1/", "-rate", "10"},
		"no rate":         {"-url", "http://127.0.0.1:1/", "-duration", "1s"},
		"rate and ramp":   {"-url", "http://127.0.0.1:1/", "-rate", "10", "-ramp", "1:2", "-duration", "1s"},
		"bad ramp":        {"-url", "http://127.0.0.1:1/", "-ramp", "10-20", "-duration", "1s"},
		"too fast":        {"-url", "http://127.0.0.1:1/", "-rate", "100001", "-duration", "1s"},
		"too long":        {"-url", "http://127.0.0.1:1/", "-rate", "10", "-duration", "11m"},
		"not http":        {"-url", "ftp://127.0.0.1/", "-rate", "10", "-duration", "1s"},
		"bad refused":     {"-url", "http://127.0.0.1:1/", "-rate", "10", "-duration", "1s", "-max-refused", "100"},
		"zero timeout":    {"-url", "http://127.0.0.1:1/", "-rate", "10", "-duration", "1s", "-timeout", "0s"},
		"unknown flag":    {"-bogus"},
		"extra argument":  {"-url", "http://127.0.0.1:1/", "-rate", "10", "-duration", "1s", "more"},
		"negative rate":   {"-url", "http://127.0.0.1:1/", "-rate", "-5", "-duration", "1s"},
		"negative ramp":   {"-url", "http://127.0.0.1:1/", "-ramp", "0:10", "-duration", "1s"},
		"duration is neg": {"-url", "http://127.0.0.1:1/", "-rate", "10", "-duration", "-1s"},
	} {
		var out, errb bytes.Buffer
		if code := run(append([]string{"loadtest"}, args...), &out, &errb); code != 2 || out.Len() != 0 {
			t.Errorf("%s: exit %d, stdout %q, want 2 and nothing", name, code, out.String())
		}
	}
	var out, errb bytes.Buffer
	run([]string{"help"}, &out, &errb)
	if !strings.Contains(out.String(), "sluice loadtest -url URL (-rate N | -ramp A:B) -duration D") {
		t.Errorf("usage does not name loadtest:\n%s", out.String())
	}
}

// TestLoadtestJSONAndChart runs the verb against a loopback upstream:
// -json prints one object that adds up, -chart writes SVG, and the
// progress lines go to stderr, one per second (stderr is no terminal).
func TestLoadtestJSONAndChart(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/busy" {
			w.Header().Set("Sluice-Reject", "queue_full")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	chart := filepath.Join(t.TempDir(), "run.svg")
	var out, errb bytes.Buffer
	code := run([]string{"loadtest", "-url", up.URL + "/", "-rate", "100", "-duration", "2s", "-json", "-chart", chart}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var rep struct {
		Sent, OK, Refused, Errors int
		Windows                   []json.RawMessage
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, out.String())
	}
	if rep.Sent == 0 || rep.OK != rep.Sent || len(rep.Windows) == 0 {
		t.Errorf("report %+v", rep)
	}
	if lines := strings.Count(errb.String(), "\n"); lines < 1 || strings.Contains(errb.String(), "\r") {
		t.Errorf("progress on stderr: %q, want plain lines", errb.String())
	}
	svg, err := os.ReadFile(chart)
	if err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(svg))
	for {
		if _, err := dec.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("chart is not well-formed: %v", err)
		}
	}

	out.Reset()
	errb.Reset()
	code = run([]string{"loadtest", "-url", up.URL + "/busy", "-rate", "50", "-duration", "1s"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"loadtest " + up.URL + "/busy, 50 req/s", "refusals by reason  queue_full", "refusals by status  503", "every refusal carried Retry-After"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
}

// TestLoadtestFindCapacityFromRate: with -rate N, -find-capacity ramps
// from N/10 to 10×N, and the JSON carries the capacity.
func TestLoadtestFindCapacityFromRate(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	var out, errb bytes.Buffer
	if code := run([]string{"loadtest", "-url", up.URL, "-rate", "20", "-find-capacity", "-duration", "2s", "-json"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var rep struct {
		From, To int
		Capacity *struct {
			Found   bool
			BrokeAt int `json:"broke_at"`
		}
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.From != 2 || rep.To != 200 || rep.Capacity == nil || rep.Capacity.Found || rep.Capacity.BrokeAt != -1 {
		t.Errorf("ramp %d:%d, capacity %+v: want 2:200 and none found (the upstream keeps up)", rep.From, rep.To, rep.Capacity)
	}
}
