// Package deploy_test checks the Kubernetes manifests in this directory
// and the Dockerfile at the root without a cluster or a Docker engine:
// every manifest is validated against strict JSON schemas generated from
// the official API types, the manifests are checked against each other and
// against the sluice config they carry, and the Dockerfile's build command
// is run to prove it yields a static binary.
package deploy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/yannh/kubeconform/pkg/resource"
	"github.com/yannh/kubeconform/pkg/validator"
	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"

	"sluice/config"
)

// manifestFiles are the YAML files of this directory that hold Kubernetes
// objects (kustomization.yaml is kustomize's own file, not an object).
func manifestFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = slices.DeleteFunc(files, func(f string) bool { return f == "kustomization.yaml" })
	if len(files) == 0 {
		t.Fatal("no manifests found")
	}
	return files
}

// object is one document of a manifest file.
type object struct {
	file string
	doc  map[string]any
}

func (o object) kind() string { s, _ := o.doc["kind"].(string); return s }

func (o object) name() string {
	m, _ := o.doc["metadata"].(map[string]any)
	s, _ := m["name"].(string)
	return s
}

// into decodes the document into an API type, as the API server would.
func (o object) into(t *testing.T, v any) {
	t.Helper()
	b, err := json.Marshal(o.doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %s %s: %v", o.file, o.kind(), o.name(), err)
	}
}

func readObjects(t *testing.T, file string) []object {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var objs []object
	dec := yaml.NewDecoder(f)
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if doc != nil {
			objs = append(objs, object{file: file, doc: doc})
		}
	}
}

// manifests holds every object of the directory, keyed by kind and name.
type manifests map[string]object

func loadManifests(t *testing.T) manifests {
	t.Helper()
	m := manifests{}
	for _, f := range manifestFiles(t) {
		for _, o := range readObjects(t, f) {
			key := o.kind() + "/" + o.name()
			if _, dup := m[key]; dup {
				t.Fatalf("%s: %s defined twice", f, key)
			}
			m[key] = o
		}
	}
	return m
}

func (m manifests) get(t *testing.T, key string, v any) object {
	t.Helper()
	o, ok := m[key]
	if !ok {
		t.Fatalf("no %s among the manifests", key)
	}
	o.into(t, v)
	return o
}

func newValidator(t *testing.T) validator.Validator {
	t.Helper()
	v, err := validator.New([]string{writeSchemas(t, t.TempDir())}, validator.Opts{
		Strict:            true,
		KubernetesVersion: kubeVersion,
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func describe(r validator.Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "status %d", r.Status)
	if r.Err != nil {
		fmt.Fprintf(&b, ": %v", r.Err)
	}
	for _, e := range r.ValidationErrors {
		fmt.Fprintf(&b, "\n  %s: %s", e.Path, e.Msg)
	}
	return b.String()
}

// TestManifestsValidate runs kubeconform over every manifest: each object
// must be valid against its kind's schema, none skipped.
func TestManifestsValidate(t *testing.T) {
	v := newValidator(t)
	n := 0
	for _, file := range manifestFiles(t) {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range v.Validate(file, f) {
			if r.Status == validator.Empty {
				continue
			}
			n++
			if r.Status != validator.Valid {
				t.Errorf("%s: %s", file, describe(r))
			}
		}
	}
	if want := len(loadManifests(t)); n != want {
		t.Errorf("validated %d objects, the files hold %d", n, want)
	}
}

// TestValidatorBites proves the schemas are strict: the Deployment with an
// unknown field, a wrong type, or a required field missing is refused,
// with the field named.
func TestValidatorBites(t *testing.T) {
	v := newValidator(t)
	container := func(d map[string]any) map[string]any {
		spec := d["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
		return spec["containers"].([]any)[0].(map[string]any)
	}
	for _, tc := range []struct {
		name   string
		mutate func(d map[string]any)
		path   string // where the error is reported
		msg    string // and what it says
	}{
		{"unknown field", func(d map[string]any) { container(d)["imagePullPolcy"] = "Always" },
			"/spec/template/spec/containers/0", "additional properties 'imagePullPolcy' not allowed"},
		{"wrong type", func(d map[string]any) { d["spec"].(map[string]any)["replicas"] = "three" },
			"/spec/replicas", "got string, want integer"},
		{"missing required field", func(d map[string]any) { delete(container(d), "name") },
			"/spec/template/spec/containers/0", "missing property 'name'"},
		{"missing required field in a probe", func(d map[string]any) {
			delete(container(d)["readinessProbe"].(map[string]any)["httpGet"].(map[string]any), "port")
		}, "/spec/template/spec/containers/0/readinessProbe/httpGet", "missing property 'port'"},
		{"wrong type in a quantity", func(d map[string]any) {
			container(d)["resources"].(map[string]any)["limits"].(map[string]any)["memory"] = true
		}, "/spec/template/spec/containers/0/resources/limits/memory", "got boolean, want number or string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := readObjects(t, "deployment.yaml")[0].doc
			tc.mutate(d)
			b, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			r := v.ValidateResource(resource.Resource{Path: "deployment.yaml", Bytes: b})
			if r.Status != validator.Invalid {
				t.Fatalf("want invalid, got %s", describe(r))
			}
			// ValidationErrors holds only the first level of causes (here
			// the $ref of spec); the error text has the whole tree.
			if want := fmt.Sprintf("at '%s': %s", tc.path, tc.msg); r.Err == nil || !strings.Contains(r.Err.Error(), want) {
				t.Errorf("no error %q: %s", want, describe(r))
			}
		})
	}
}

// TestKustomizationListsManifests: kustomization.yaml applies every
// manifest but the documented example for the adapter's namespace.
func TestKustomizationListsManifests(t *testing.T) {
	b, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		APIVersion string   `yaml:"apiVersion"`
		Kind       string   `yaml:"kind"`
		Resources  []string `yaml:"resources"`
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("kustomization.yaml: apiVersion %q kind %q", k.APIVersion, k.Kind)
	}
	want := slices.DeleteFunc(manifestFiles(t), func(f string) bool { return f == "prometheus-adapter.yaml" })
	got := slices.Sorted(slices.Values(k.Resources))
	if !slices.Equal(got, want) {
		t.Errorf("kustomization.yaml resources %v, want %v", got, want)
	}
}

// sluiceConfig is the config the ConfigMap carries, loaded as sluice loads
// it: every key known, every value valid.
func sluiceConfig(t *testing.T, m manifests) (*config.Config, string) {
	t.Helper()
	var cm corev1.ConfigMap
	m.get(t, "ConfigMap/sluice-config", &cm)
	text, ok := cm.Data["sluice.yaml"]
	if !ok {
		t.Fatal("ConfigMap sluice-config has no sluice.yaml")
	}
	cfg, err := config.Parse("configmap.yaml:sluice.yaml", []byte(text))
	if err != nil {
		t.Fatalf("the ConfigMap's sluice.yaml does not load:\n%v", err)
	}
	return cfg, text
}

// TestConfigMapConfigLoads: the ConfigMap's config uses the scale-out
// keys, so one bucket and one breaker serve all replicas.
func TestConfigMapConfigLoads(t *testing.T) {
	m := loadManifests(t)
	cfg, _ := sluiceConfig(t, m)
	if cfg.Redis == nil || len(cfg.Redis.Addrs) == 0 {
		t.Fatal("no redis block")
	}
	var dep appsv1.Deployment
	m.get(t, "Deployment/sluice", &dep)
	for _, r := range cfg.Routes {
		if r.RateLimit == nil {
			continue
		}
		if r.RateLimit.Scope != "global" {
			t.Errorf("route %s: rate_limit.scope %q, want global", r.Name, r.RateLimit.Scope)
		}
		if r.RateLimit.Replicas != int(*dep.Spec.Replicas) {
			t.Errorf("route %s: rate_limit.replicas %d, the Deployment runs %d", r.Name, r.RateLimit.Replicas, *dep.Spec.Replicas)
		}
	}
	for _, u := range cfg.Upstreams {
		if u.Breaker != nil && !u.Breaker.Shared {
			t.Errorf("upstream %s: breaker not shared", u.Name)
		}
	}
}

func port(t *testing.T, listen string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(listen)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(p, 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return int32(n)
}

func containerPort(t *testing.T, c corev1.Container, name string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("container %s has no port %q", c.Name, name)
	return 0
}

func mountOf(t *testing.T, pod corev1.PodSpec, c corev1.Container, path string) (corev1.VolumeMount, corev1.Volume) {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		if vm.MountPath != path {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name == vm.Name {
				return vm, v
			}
		}
		t.Fatalf("mount %s names no volume %q", path, vm.Name)
	}
	t.Fatalf("container %s mounts nothing at %s", c.Name, path)
	return corev1.VolumeMount{}, corev1.Volume{}
}

// secretFile checks that file is a key of a Secret mounted in the pod and
// returns that key.
func secretFile(t *testing.T, m manifests, pod corev1.PodSpec, c corev1.Container, file string) string {
	t.Helper()
	vm, vol := mountOf(t, pod, c, filepath.Dir(file))
	if vol.Secret == nil {
		t.Fatalf("%s: %s is not a Secret volume", file, vm.MountPath)
	}
	var sec corev1.Secret
	m.get(t, "Secret/"+vol.Secret.SecretName, &sec)
	for _, it := range vol.Secret.Items {
		if it.Path == filepath.Base(file) {
			_, inData := sec.Data[it.Key]
			if _, ok := sec.StringData[it.Key]; !ok && !inData {
				t.Errorf("%s: Secret %s has no key %s", file, sec.Name, it.Key)
			}
			return it.Key
		}
	}
	t.Fatalf("%s: the Secret volume has no item %s", file, filepath.Base(file))
	return ""
}

// TestDeploymentFitsSluice checks the Deployment against the config it
// mounts and the behaviour of sluice it relies on.
func TestDeploymentFitsSluice(t *testing.T) {
	m := loadManifests(t)
	cfg, _ := sluiceConfig(t, m)
	var dep appsv1.Deployment
	m.get(t, "Deployment/sluice", &dep)
	pod := dep.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	c := pod.Containers[0]

	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 3 {
		t.Errorf("replicas %v, want 3", dep.Spec.Replicas)
	}
	if !slices.Equal(c.Args, []string{"run", "-config", "/etc/sluice/sluice.yaml"}) {
		t.Errorf("args %q", c.Args)
	}

	// The config's listeners are the ports the pod declares.
	if got, want := containerPort(t, c, "http"), port(t, cfg.Server.Listen); got != want {
		t.Errorf("http port %d, server.listen %s", got, cfg.Server.Listen)
	}
	if got, want := containerPort(t, c, "admin"), port(t, cfg.Admin.Listen); got != want {
		t.Errorf("admin port %d, admin.listen %s", got, cfg.Admin.Listen)
	}
	if host, _, _ := net.SplitHostPort(cfg.Admin.Listen); host != "" {
		t.Errorf("admin.listen %s: the kubelet probes the pod IP, listen on all interfaces", cfg.Admin.Listen)
	}

	// Probes on the admin listener's health endpoints (docs/SPEC.md).
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("no HTTP %s probe", p.name)
			continue
		}
		if p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "admin" {
			t.Errorf("%s probe GET %s on port %s, want %s on admin", p.name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port.String(), p.path)
		}
	}

	// The ConfigMap as a directory: a subPath mount is never updated, so
	// hot reload would not see an edit.
	vm, vol := mountOf(t, pod, c, "/etc/sluice")
	if vm.SubPath != "" || vm.SubPathExpr != "" {
		t.Error("the config is mounted with subPath: ConfigMap updates would not reach it")
	}
	if vol.ConfigMap == nil || vol.ConfigMap.Name != "sluice-config" || len(vol.ConfigMap.Items) != 0 {
		t.Errorf("/etc/sluice is not the whole ConfigMap sluice-config: %+v", vol.VolumeSource)
	}

	// Secrets as files.
	redisKey := secretFile(t, m, pod, c, cfg.Redis.PasswordFile)
	secretFile(t, m, pod, c, cfg.Admin.TokenFile)

	// Drain: the preStop sleep, then shutdown_grace for in-flight
	// requests, then up to 5s to close the admin listener and flush
	// traces, all inside the grace period the kubelet gives.
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Fatal("no preStop sleep")
	}
	preStop := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	need := preStop + cfg.Server.ShutdownGrace + 5*time.Second
	if pod.TerminationGracePeriodSeconds == nil || time.Duration(*pod.TerminationGracePeriodSeconds)*time.Second < need {
		t.Errorf("terminationGracePeriodSeconds %v, need at least %v", pod.TerminationGracePeriodSeconds, need)
	}

	// Non-root, read-only.
	psc, sc := pod.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Error("the pod may run as root")
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container securityContext %+v", sc)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("no %s request", r)
		}
	}
	if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		t.Error("no memory limit")
	}

	// Redis: the address the config dials is the Service, and Redis takes
	// the password sluice reads.
	var rsvc corev1.Service
	host, p, _ := net.SplitHostPort(cfg.Redis.Addrs[0])
	m.get(t, "Service/"+host, &rsvc)
	if len(rsvc.Spec.Ports) != 1 || strconv.Itoa(int(rsvc.Spec.Ports[0].Port)) != p {
		t.Errorf("Service %s ports %+v, config dials %s", host, rsvc.Spec.Ports, cfg.Redis.Addrs[0])
	}
	var redis appsv1.Deployment
	m.get(t, "Deployment/"+host, &redis)
	if !selects(rsvc.Spec.Selector, redis.Spec.Template.Labels) {
		t.Errorf("Service %s does not select the Redis pods", host)
	}
	rc := redis.Spec.Template.Spec.Containers[0]
	var fromSecret string
	for _, e := range rc.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && slices.Contains(rc.Args, "$("+e.Name+")") {
			fromSecret = e.ValueFrom.SecretKeyRef.Key
		}
	}
	if fromSecret != redisKey {
		t.Errorf("Redis takes its password from key %q, sluice reads key %q", fromSecret, redisKey)
	}
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// TestServicePDBAndHPATargetSluice: the Service, the disruption budget and
// the autoscaler all point at the sluice pods.
func TestServicePDBAndHPATargetSluice(t *testing.T) {
	m := loadManifests(t)
	var dep appsv1.Deployment
	m.get(t, "Deployment/sluice", &dep)
	labels := dep.Spec.Template.Labels
	if !selects(dep.Spec.Selector.MatchLabels, labels) {
		t.Fatal("the Deployment's selector does not select its pods")
	}

	var svc corev1.Service
	m.get(t, "Service/sluice", &svc)
	if !selects(svc.Spec.Selector, labels) {
		t.Error("Service sluice does not select the pods")
	}
	named := map[string]bool{}
	for _, p := range dep.Spec.Template.Spec.Containers[0].Ports {
		named[p.Name] = true
	}
	for _, p := range svc.Spec.Ports {
		if !named[p.TargetPort.String()] {
			t.Errorf("Service port %s targets %s, which the pod does not name", p.Name, p.TargetPort.String())
		}
	}

	var pdb policyv1.PodDisruptionBudget
	m.get(t, "PodDisruptionBudget/sluice", &pdb)
	if pdb.Spec.Selector == nil || !selects(pdb.Spec.Selector.MatchLabels, labels) {
		t.Error("the PodDisruptionBudget does not select the pods")
	}
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("PodDisruptionBudget maxUnavailable %v, want 1", pdb.Spec.MaxUnavailable)
	}

	var hpa autoscalingv2.HorizontalPodAutoscaler
	m.get(t, "HorizontalPodAutoscaler/sluice", &hpa)
	ref := hpa.Spec.ScaleTargetRef
	if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != dep.Name {
		t.Errorf("the HPA scales %+v", ref)
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas != *dep.Spec.Replicas {
		t.Errorf("HPA minReplicas %v, the Deployment starts with %d", hpa.Spec.MinReplicas, *dep.Spec.Replicas)
	}
	if len(hpa.Spec.Metrics) != 1 || hpa.Spec.Metrics[0].Type != autoscalingv2.PodsMetricSourceType ||
		hpa.Spec.Metrics[0].Pods.Metric.Name != "sluice_backpressure_ratio" {
		t.Errorf("HPA metrics %+v, want the Pods metric sluice_backpressure_ratio", hpa.Spec.Metrics)
	}
}

// TestAdapterRuleServesTheHPAMetric: the prometheus-adapter example
// exposes, per pod, the metric the HPA asks for, from the series sluice
// exports.
func TestAdapterRuleServesTheHPAMetric(t *testing.T) {
	m := loadManifests(t)
	var cm corev1.ConfigMap
	m.get(t, "ConfigMap/prometheus-adapter", &cm)
	var rules struct {
		Rules []struct {
			SeriesQuery string `yaml:"seriesQuery"`
			Resources   struct {
				Overrides map[string]struct {
					Resource string `yaml:"resource"`
				} `yaml:"overrides"`
			} `yaml:"resources"`
			Name struct {
				Matches string `yaml:"matches"`
				As      string `yaml:"as"`
			} `yaml:"name"`
			MetricsQuery string `yaml:"metricsQuery"`
		} `yaml:"rules"`
	}
	dec := yaml.NewDecoder(strings.NewReader(cm.Data["config.yaml"]))
	dec.KnownFields(true)
	if err := dec.Decode(&rules); err != nil {
		t.Fatalf("prometheus-adapter config.yaml: %v", err)
	}
	if len(rules.Rules) != 1 {
		t.Fatalf("%d rules", len(rules.Rules))
	}
	r := rules.Rules[0]
	if !strings.HasPrefix(r.SeriesQuery, "sluice_backpressure_ratio{") || r.Name.As != "sluice_backpressure_ratio" {
		t.Errorf("rule %+v does not serve sluice_backpressure_ratio", r)
	}
	if r.Resources.Overrides["pod"].Resource != "pod" || r.Resources.Overrides["namespace"].Resource != "namespace" {
		t.Errorf("rule does not map series to pods: %+v", r.Resources)
	}
	for _, part := range []string{"<<.Series>>", "<<.LabelMatchers>>", "by (<<.GroupBy>>)"} {
		if !strings.Contains(r.MetricsQuery, part) {
			t.Errorf("metricsQuery %q lacks %s", r.MetricsQuery, part)
		}
	}
	// The metric and its route label are sluice's (docs/SPEC.md).
	spec, err := os.ReadFile("../docs/SPEC.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(spec, []byte("`sluice_backpressure_ratio{route}`")) {
		t.Error("docs/SPEC.md no longer names sluice_backpressure_ratio{route}")
	}
	var hpa autoscalingv2.HorizontalPodAutoscaler
	m.get(t, "HorizontalPodAutoscaler/sluice", &hpa)
	cfg, _ := sluiceConfig(t, m)
	sel := hpa.Spec.Metrics[0].Pods.Metric.Selector
	if sel == nil || !slices.ContainsFunc(cfg.Routes, func(r config.Route) bool { return r.Name == sel.MatchLabels["route"] }) {
		t.Errorf("the HPA's route selector %v names no route of the config", sel)
	}
}
