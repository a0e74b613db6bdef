package config

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// EnvPrefix starts the name of every environment variable read by
// [Config.ApplyEnv].
const EnvPrefix = "SWITCHBOARD_"

// ApplyEnv overrides c from environment variables given as "KEY=value"
// entries (as returned by os.Environ).
//
// The variable for a key is EnvPrefix followed by the key's YAML path in
// upper case, joined with "_": listen.c2s is SWITCHBOARD_LISTEN_C2S,
// etcd.embedded.client is SWITCHBOARD_ETCD_EMBEDDED_CLIENT,
// limits.max_stanza_bytes is SWITCHBOARD_LIMITS_MAX_STANZA_BYTES.
// Values are parsed by type: strings as-is (an empty value clears the key,
// e.g. disables a listener), integers in base 10, booleans as accepted by
// strconv.ParseBool ("true", "false", "1", "0", ...), durations as "30s", and
// lists of strings (etcd.endpoints, cluster.join) comma-separated, with
// blanks trimmed and empty items dropped.
//
// The lists of structures, hosts and components (with their delegations),
// cannot be set from the environment: use the config file for them.
// Setting their variables (SWITCHBOARD_HOSTS, SWITCHBOARD_COMPONENTS) is an
// error. Other variables with the prefix that match no key are ignored, since
// other tools may share the prefix. Every malformed value is reported, naming its variable.
func (c *Config) ApplyEnv(environ []string) error {
	env := make(map[string]string)
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if ok && strings.HasPrefix(k, EnvPrefix) {
			env[k] = v // later entries win, as in os.Environ
		}
	}
	if len(env) == 0 {
		return nil
	}
	return errors.Join(applyEnv(reflect.ValueOf(c).Elem(), strings.TrimSuffix(EnvPrefix, "_"), env)...)
}

var errNotEnv = errors.New("cannot be set from the environment; use the config file")

var textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()

// applyEnv walks the struct v by its yaml tags and sets each scalar field, or
// list of strings, whose variable (prefix_TAG) is present in env.
func applyEnv(v reflect.Value, prefix string, env map[string]string) []error {
	var errs []error
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || tag == "" || tag == "-" {
			continue
		}
		name := prefix + "_" + strings.ToUpper(tag)
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct && !reflect.PointerTo(f.Type).Implements(textUnmarshalerType) {
			errs = append(errs, applyEnv(fv, name, env)...)
			continue
		}
		raw, ok := env[name]
		if !ok {
			continue
		}
		if err := setFromEnv(fv, raw); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errs
}

// setFromEnv parses raw into fv according to fv's type. Types that cannot be
// expressed in one variable (maps, lists of structures) are an error, so that
// e.g. SWITCHBOARD_HOSTS is not silently ignored.
func setFromEnv(fv reflect.Value, raw string) error {
	if u, ok := fv.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return u.UnmarshalText([]byte(raw))
	}
	s := strings.TrimSpace(raw)
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("invalid boolean %q (want true or false)", raw)
		}
		fv.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, fv.Type().Bits())
		if err != nil {
			return fmt.Errorf("invalid integer %q", raw)
		}
		fv.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, fv.Type().Bits())
		if err != nil {
			return fmt.Errorf("invalid unsigned integer %q", raw)
		}
		fv.SetUint(n)
	case reflect.Slice:
		if fv.Type().Elem().Kind() != reflect.String {
			return errNotEnv
		}
		items := reflect.MakeSlice(fv.Type(), 0, 0)
		for item := range strings.SplitSeq(raw, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = reflect.Append(items, reflect.ValueOf(item).Convert(fv.Type().Elem()))
			}
		}
		fv.Set(items)
	default:
		return errNotEnv
	}
	return nil
}
