# Adds Hangar's drone to an image of your own, so the docker runtime can run
# it as an app's instance. Build it next to the images `make images` made:
#
#   docker build -f images/add-drone.Dockerfile --build-arg BASE=myorg/myapp:1.4 -t myorg/myapp:1.4-hangar .
#
# then map a role to it:  hangar image set --app APP --version V --runtime RT myorg/myapp:1.4-hangar
#
# The drone is static (no libc needed) and runs as the container's init.
# Your image keeps its own files, users and packages; the app's lifecycle
# commands run with /bin/sh, so an image without a shell (distroless, scratch)
# needs busybox too: uncomment the second COPY. docs/images.md.
ARG BASE
FROM hangar/drone-base:latest AS hangar
FROM ${BASE}
COPY --from=hangar /hangar/bin/drone /hangar/bin/hangar-supervise /hangar/bin/
# COPY --from=hangar /bin/busybox /bin/sh
ENTRYPOINT ["/hangar/bin/drone"]
