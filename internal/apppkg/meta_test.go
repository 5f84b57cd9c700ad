package apppkg

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// AppCenter packages have no package.json: the name and version come from
// the caller or from the folder's name, and whatever is given must agree
// with a package.json that is there.
func TestPackageNaming(t *testing.T) {
	noMeta := kvFiles()
	delete(noMeta, "package.json")

	tests := []struct {
		name      string
		files     map[string]string
		folder    string // "" keeps the temporary folder's name
		opts      LoadOptions
		wantName  string
		wantVer   string
		wantErr   []string
		wantWarns []string
	}{
		{name: "from options", files: noMeta, opts: LoadOptions{Name: "zk", Version: "3.4.13"}, wantName: "zk", wantVer: "3.4.13"},
		{name: "from folder name", files: noMeta, folder: "appcenter-zookeeper-3.4.13", wantName: "appcenter-zookeeper", wantVer: "3.4.13",
			wantWarns: []string{`taken from the folder's name "appcenter-zookeeper-3.4.13"`}},
		{name: "folder without version", files: noMeta, folder: "appcenter-zookeeper",
			wantErr: []string{"package.json: missing", `folder's name "appcenter-zookeeper" gives no version`, "--name and --version"}},
		{name: "version only", files: noMeta, opts: LoadOptions{Version: "1"}, wantErr: []string{"package.json: missing", "--name"}},
		{name: "bad name", files: noMeta, opts: LoadOptions{Name: "a b", Version: "1"}, wantErr: []string{"package.json: name", "without spaces"}},
		{name: "package.json agrees", files: kvFiles(), opts: LoadOptions{Name: "KVStore", Version: "1.0.0"}, wantName: "kvstore", wantVer: "1.0.0"},
		{name: "package.json disagrees on name", files: kvFiles(), opts: LoadOptions{Name: "other"}, wantErr: []string{`name "kvstore" differs from the name given, "other"`}},
		{name: "package.json disagrees on version", files: kvFiles(), opts: LoadOptions{Version: "2"}, wantErr: []string{`version "1.0.0" differs`}},
		{name: "openpitrix package.json", files: withMeta(t, `{"api_version": "v1", "name": "Nginx", "version": "1.0.0", "maintainers": [{"name": "op", "email": "op@example.com"}]}`),
			wantName: "Nginx", wantVer: "1.0.0"},
		{name: "unknown api_version", files: withMeta(t, `{"api_version": "v2", "name": "n", "version": "1"}`), wantErr: []string{`api_version "v2"`, `"v1"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writePkg(t, tt.files)
			if tt.folder != "" {
				renamed := filepath.Join(t.TempDir(), tt.folder)
				if err := os.Rename(dir, renamed); err != nil {
					t.Fatal(err)
				}
				dir = renamed
			}
			p, err := LoadDirWith(dir, tt.opts)
			if tt.wantErr != nil {
				wantErr(t, err, tt.wantErr...)
				return
			}
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			if p.Meta.Name != tt.wantName || p.Meta.Version != tt.wantVer {
				t.Errorf("name, version = %q, %q; want %q, %q", p.Meta.Name, p.Meta.Version, tt.wantName, tt.wantVer)
			}
			for _, w := range tt.wantWarns {
				if !hasWarning(p.Warnings, w) {
					t.Errorf("no warning with %q in %q", w, p.Warnings)
				}
			}
			// The archive of the folder loads the same with the same options,
			// which is how pilot reloads what was pushed.
			if tt.folder == "" {
				archive, err := ArchiveDir(dir)
				if err != nil {
					t.Fatal(err)
				}
				q, err := LoadArchiveWith(bytes.NewReader(archive), tt.opts)
				if err != nil || q.Meta.Name != p.Meta.Name || q.Meta.Version != p.Meta.Version {
					t.Errorf("archive: %v, %+v", err, q)
				}
			}
		})
	}
}

func withMeta(t *testing.T, meta string) map[string]string {
	t.Helper()
	files := kvFiles()
	files["package.json"] = meta
	return files
}
