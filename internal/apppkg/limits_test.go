package apppkg

import (
	"strings"
	"testing"
	"time"
)

// TestConfdResourceLimits refuses conf.d files that would make the TOML
// parser take gigabytes, before parsing them, and keeps accepting real ones.
func TestConfdResourceLimits(t *testing.T) {
	const name = "confd/conf.d/x.toml"
	tests := []struct {
		name, data string
		want       string // "" means accepted
	}{
		{"nested inline tables", "[template]\nsrc = \"a\"\ndest = \"/a\"\nx = " + strings.Repeat("{b=", 4000) + "1" + strings.Repeat("}", 4000) + "\n", "characters, more than the"},
		{"long dotted key", "[" + strings.Repeat("a.", 20000) + "b]\nx = 1\n", "characters, more than the"},
		{"too large", "[template]\nsrc = \"a\"\ndest = \"/a\"\nreload_cmd = \"" + strings.Repeat("x", 70<<10) + "\"\n", "bytes, more than the"},
		{"real resource with dotted paths", "[template]\nsrc = \"nginx.conf.tmpl\"\ndest = \"/etc/nginx/nginx.conf\"\nkeys = [\"/hosts\", \"/env\"]\ncheck_cmd = \"/usr/sbin/nginx -t -c {{.src}}\"\nreload_cmd = \"/usr/sbin/nginx -s reload && /opt/app/bin/notify.sh v1.2.3\"\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, err := ParseConfdResource(name, []byte(tt.data))
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantErr(t, err, name, tt.want)
			if d := time.Since(start); d > time.Second {
				t.Fatalf("took %v to refuse", d)
			}
		})
	}
}
