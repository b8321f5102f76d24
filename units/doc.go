// Package units holds octo's systemd units, tmpfiles.d and sysusers.d files
// and their installer (install.sh); its tests install them into a staging
// root and check them with systemd-analyze.
package units
