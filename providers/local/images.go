package local

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Images on the local runtime (runtime config images_dir): an image is a
// folder of images_dir, named by the image (`web-1.0`), whose tree a new
// instance's root starts as: the files an image would hold (/opt/app/bin/…,
// /etc/confd/… for templates baked in). Without images_dir, instances run
// no image and the image a request names is not used, as before.

// frontgateImage is what pilot asks for a network's frontgate: the
// frontgate binary, never a folder of images_dir.
const frontgateImage = "frontgate"

// listImages names the images of images_dir.
func (c runtimeConfig) listImages() ([]string, error) {
	entries, err := os.ReadDir(c.images)
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "runtime.config.%s: %v", keyImagesDir, err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// imageDir is the folder of image, checked to be one of images_dir's.
func (c runtimeConfig) imageDir(image string) (string, error) {
	if image == "" || image == "." || image == ".." || strings.ContainsAny(image, `/\`) || strings.HasPrefix(image, ".") {
		return "", status.Errorf(codes.InvalidArgument, "image %q: the local runtime's images are folders of runtime.config.%s %s; give one's name", image, keyImagesDir, c.images)
	}
	dir := filepath.Join(c.images, image)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		have, _ := c.listImages()
		return "", status.Errorf(codes.InvalidArgument, "image %q: not in runtime.config.%s %s (it has: %s)", image, keyImagesDir, c.images, strings.Join(have, ", "))
	}
	return dir, nil
}

// seedRoot copies the tree of image folder src into an instance's root:
// folders, regular files with their permission bits (never setuid, setgid
// or sticky), and symbolic links that stay inside the tree.
func seedRoot(src, root string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		dst := filepath.Join(root, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := info.Mode()
		switch {
		case mode.IsDir():
			return os.MkdirAll(dst, mode.Perm()|0o700)
		case mode&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if filepath.IsAbs(target) || !filepath.IsLocal(filepath.Join(filepath.Dir(rel), target)) {
				return fmt.Errorf("image file %s: a link to %q leaves the image", rel, target)
			}
			return os.Symlink(target, dst)
		case mode.IsRegular():
			return copyFile(p, dst, mode.Perm())
		default:
			return fmt.Errorf("image file %s: %s files are not copied into an instance", rel, mode.Type())
		}
	})
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
