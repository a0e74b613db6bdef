package deploy

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/switchboard-im/switchboard/config"
)

// TestYAMLParses: every YAML file under deploy/ parses, every document of it.
func TestYAMLParses(t *testing.T) {
	n := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != "." {
			return filepath.SkipDir // .build
		}
		if ext := filepath.Ext(path); d.IsDir() || (ext != ".yaml" && ext != ".yml") {
			return nil
		}
		n++
		docs := yamlDocs(t, path)
		if len(docs) == 0 {
			t.Errorf("%s: no YAML document", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Errorf("only %d YAML files found under deploy/", n)
	}
}

// TestExamplesLoad: the example configs load and validate as they are (the cluster one
// with each node's environment).
func TestExamplesLoad(t *testing.T) {
	clearEnv(t)
	for _, f := range []string{"examples/single-node.yaml", "examples/delegations.yaml"} {
		if _, err := config.Load(f); err != nil {
			t.Errorf("%v", err)
		}
	}
	cfg, err := config.Load("examples/delegations.yaml")
	if err == nil {
		if h := cfg.Host("example.org"); h == nil || len(h.Delegations) < 3 {
			t.Errorf("examples/delegations.yaml: example.org delegations: %+v", h)
		}
		if c := cfg.Component("legacy.example.net"); c == nil || c.DelegationNS != config.DelegationNS1 {
			t.Errorf("examples/delegations.yaml: legacy.example.net: %+v", c)
		}
	}
	for i, ip := range []string{"198.51.100.11", "198.51.100.12", "198.51.100.13"} {
		id := "node" + string(rune('1'+i))
		setEnv(t, map[string]string{
			"SWITCHBOARD_NODE_ID":                  id,
			"SWITCHBOARD_CLUSTER_ADVERTISE":        ip + ":7946",
			"SWITCHBOARD_CLUSTER_REMOTE_ADVERTISE": ip + ":8946",
		})
		cfg, err := config.Load("examples/cluster.yaml")
		if err != nil {
			t.Errorf("%s: %v", id, err)
			continue
		}
		if cfg.Node.ID != id || cfg.EmbeddedEtcd() || len(cfg.Cluster.Join) != 3 {
			t.Errorf("examples/cluster.yaml as %s: %+v %+v", id, cfg.Node, cfg.Cluster)
		}
	}
}

// TestComposeConfig: each compose node's config (the mounted file plus the service's
// environment) loads, and the compose file is wired the way the tests and README rely on.
func TestComposeConfig(t *testing.T) {
	clearEnv(t)
	var compose struct {
		Services map[string]struct {
			Image       string
			Environment map[string]string
			Volumes     []string
			Ports       []string
			Networks    map[string]struct {
				IPv4Address string `yaml:"ipv4_address"`
			}
		}
	}
	decodeFile(t, "docker-compose.yml", &compose)
	etcd, ok := compose.Services["etcd"]
	if !ok || !strings.Contains(etcd.Image, "${ETCD_IMAGE:-switchboard-etcd:dev}") {
		t.Errorf("etcd service image %q: want ${ETCD_IMAGE:-switchboard-etcd:dev}", etcd.Image)
	}
	valid := envNames()
	seenIPs := map[string]string{}
	for _, name := range []string{"node1", "node2", "node3"} {
		s, ok := compose.Services[name]
		if !ok {
			t.Fatalf("docker-compose.yml: no service %s", name)
		}
		if !strings.Contains(s.Image, "switchboard:dev") {
			t.Errorf("%s: image %q", name, s.Image)
		}
		var file string
		for _, v := range s.Volumes {
			if src, dst, _ := strings.Cut(v, ":"); strings.HasPrefix(dst, "/etc/switchboard/switchboard.yaml") {
				file = filepath.FromSlash(src)
			}
		}
		if file == "" {
			t.Fatalf("%s: no config file mounted at /etc/switchboard/switchboard.yaml", name)
		}
		for k := range s.Environment {
			if !valid[k] {
				t.Errorf("%s: %s is not a config key's variable (it would be ignored)", name, k)
			}
		}
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s: port %s is not published on 127.0.0.1 only", name, p)
			}
		}
		for _, n := range s.Networks {
			if other, dup := seenIPs[n.IPv4Address]; dup {
				t.Errorf("%s and %s share the address %s", name, other, n.IPv4Address)
			}
			seenIPs[n.IPv4Address] = name
		}
		setEnv(t, s.Environment)
		cfg, err := config.Load(file)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if cfg.Node.ID != name {
			t.Errorf("%s: node.id %q", name, cfg.Node.ID)
		}
		for _, j := range cfg.Cluster.Join {
			if h, _, _ := net.SplitHostPort(j); h == name {
				t.Errorf("%s: joins itself (%s): a node that starts first would form a cluster of its own", name, j)
			}
		}
		if len(cfg.Cluster.Join) != 2 {
			t.Errorf("%s: cluster.join %v: want the two other nodes", name, cfg.Cluster.Join)
		}
		if !slices.Equal(cfg.Etcd.Endpoints, []string{"http://etcd:2379"}) {
			t.Errorf("%s: etcd.endpoints %v", name, cfg.Etcd.Endpoints)
		}
		if cfg.Component("pubsub.localhost") == nil || cfg.Host("localhost") == nil {
			t.Errorf("%s: host localhost and component pubsub.localhost are what the README and compose_test.go use", name)
		}
	}
}

// TestKubernetes: the manifests hang together, and a pod's config (the Secret's file,
// the ConfigMap's and the pod's environment) loads.
func TestKubernetes(t *testing.T) {
	clearEnv(t)
	var kust struct{ Resources []string }
	decodeFile(t, "k8s/kustomization.yaml", &kust)
	objs := map[string]map[string]any{} // "Kind/name"
	for _, r := range kust.Resources {
		for _, d := range yamlDocs(t, filepath.Join("k8s", r)) {
			var o map[string]any
			if err := d.Decode(&o); err != nil {
				t.Fatalf("k8s/%s: %v", r, err)
			}
			objs[str(o, "kind")+"/"+str(o, "metadata", "name")] = o
		}
	}
	for _, want := range []string{"Namespace/switchboard", "ConfigMap/switchboard-env", "Secret/switchboard-config",
		"Service/switchboard-peers", "Service/switchboard", "Service/switchboard-components", "StatefulSet/switchboard",
		"Service/etcd", "StatefulSet/etcd", "PodDisruptionBudget/switchboard",
		"NetworkPolicy/switchboard", "NetworkPolicy/etcd"} {
		if objs[want] == nil {
			t.Errorf("k8s: no %s", want)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// The pod's environment: ConfigMap, then the container's own variables.
	sts := objs["StatefulSet/switchboard"]
	if n, _ := get(sts, "spec", "replicas").(int); n != 3 {
		t.Errorf("StatefulSet/switchboard: %v replicas", get(sts, "spec", "replicas"))
	}
	if get(sts, "spec", "serviceName") != "switchboard-peers" {
		t.Errorf("StatefulSet/switchboard: serviceName %v", get(sts, "spec", "serviceName"))
	}
	if get(objs["Service/switchboard-peers"], "spec", "clusterIP") != "None" {
		t.Errorf("Service/switchboard-peers is not headless")
	}
	ctr := get(sts, "spec", "template", "spec", "containers").([]any)[0].(map[string]any)
	env := map[string]string{}
	for k, v := range get(objs["ConfigMap/switchboard-env"], "data").(map[string]any) {
		env[k] = v.(string)
	}
	fieldValues := map[string]string{"metadata.name": "switchboard-0", "status.podIP": "10.1.2.3"}
	for _, e := range get(ctr, "env").([]any) {
		e := e.(map[string]any)
		v, _ := e["value"].(string)
		if fp := str(e, "valueFrom", "fieldRef", "fieldPath"); fp != "" {
			v = fieldValues[fp]
		}
		for k, x := range env { // $(VAR) expansion as the kubelet does it
			v = strings.ReplaceAll(v, "$("+k+")", x)
		}
		env[str(e, "name")] = v
	}
	valid := envNames()
	for k := range env {
		if strings.HasPrefix(k, config.EnvPrefix) && !valid[k] {
			t.Errorf("k8s: %s is not a config key's variable (it would be ignored)", k)
		}
	}
	file := filepath.Join(t.TempDir(), "switchboard.yaml")
	if err := os.WriteFile(file, []byte(str(objs["Secret/switchboard-config"], "stringData", "switchboard.yaml")), 0o600); err != nil {
		t.Fatal(err)
	}
	setEnv(t, env)
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatalf("k8s pod config: %v", err)
	}
	if cfg.Node.ID != "switchboard-0" || cfg.Cluster.Advertise != "10.1.2.3:7946" || cfg.Cluster.RemoteAdvertise != "10.1.2.3:8946" {
		t.Errorf("k8s pod config: node %+v cluster %+v", cfg.Node, cfg.Cluster)
	}
	if args := get(ctr, "args").([]any); !slices.Contains(args, any("/etc/switchboard/switchboard.yaml")) {
		t.Errorf("k8s: container args %v", args)
	}

	// Named ports: the listeners' ports, the probes' and the Services' targets.
	ports := map[string]int{}
	for _, p := range get(ctr, "ports").([]any) {
		p := p.(map[string]any)
		ports[str(p, "name")] = p["containerPort"].(int)
	}
	for name, addr := range map[string]string{"c2s": cfg.Listen.C2S, "c2s-tls": cfg.Listen.C2STLS,
		"component": cfg.Listen.Component, "admin": cfg.Listen.Admin, "gossip-tcp": cfg.Cluster.Bind, "remote": cfg.Cluster.Remote} {
		if _, p, _ := net.SplitHostPort(addr); p != strconv.Itoa(ports[name]) {
			t.Errorf("k8s: container port %s=%d but the config listens on %s", name, ports[name], addr)
		}
	}
	for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz", "startupProbe": "/healthz"} {
		if got := str(ctr, probe, "httpGet", "path"); got != path || str(ctr, probe, "httpGet", "port") != "admin" {
			t.Errorf("k8s: %s is %v", probe, get(ctr, probe))
		}
	}
	for _, svc := range []string{"Service/switchboard", "Service/switchboard-components", "Service/switchboard-peers"} {
		for _, p := range get(objs[svc], "spec", "ports").([]any) {
			if tp := str(p.(map[string]any), "targetPort"); ports[tp] == 0 {
				t.Errorf("%s: targetPort %q is no container port", svc, tp)
			}
		}
	}
}

// --- helpers ---

func yamlDocs(t *testing.T, path string) []*yaml.Node {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, &n)
	}
}

func decodeFile(t *testing.T, path string, v any) {
	t.Helper()
	docs := yamlDocs(t, path)
	if len(docs) != 1 {
		t.Fatalf("%s: %d documents", path, len(docs))
	}
	if err := docs[0].Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func get(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func str(v any, keys ...string) string {
	s, _ := get(v, keys...).(string)
	return s
}

// clearEnv unsets every SWITCHBOARD_* variable for the test, so that only the ones
// each case sets apply.
func clearEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, config.EnvPrefix) {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
}

// setEnv replaces the SWITCHBOARD_* environment with env.
func setEnv(t *testing.T, env map[string]string) {
	clearEnv(t)
	for k, v := range env {
		t.Setenv(k, v)
	}
}

// envNames is the set of variables config.ApplyEnv reads: SWITCHBOARD_ + the yaml path
// of every key, except the file-only lists of structures.
func envNames() map[string]bool {
	out := map[string]bool{}
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || tag == "" || tag == "-" {
				continue
			}
			name := prefix + "_" + strings.ToUpper(tag)
			switch {
			case f.Type.Kind() == reflect.Struct:
				walk(f.Type, name)
			case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() != reflect.String:
			default:
				out[name] = true
			}
		}
	}
	walk(reflect.TypeFor[config.Config](), strings.TrimSuffix(config.EnvPrefix, "_"))
	return out
}
