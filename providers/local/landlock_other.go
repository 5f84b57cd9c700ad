//go:build !linux

package local

import "errors"

func landlockABI() int { return 0 }

func confineAndExec(launchSpec) error {
	return errors.New("confining instances with Landlock needs Linux")
}
