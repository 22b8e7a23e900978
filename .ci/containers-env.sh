# Sourced by .ci/containers: podman with its own storage under one fixed folder (so a CI run never fills
# another's disk and old layers can be pruned), and the two settings these machines need (runc instead of crun,
# explicit ulimits; see docs/deployment.md, "Building the images here").
AISERVER_CONTAINERS_DIR=${AISERVER_CONTAINERS_DIR:-/var/tmp/aiserver-containers}
mkdir -p "$AISERVER_CONTAINERS_DIR/storage" "$AISERVER_CONTAINERS_DIR/runroot"
cat > "$AISERVER_CONTAINERS_DIR/storage.conf" <<EOC
[storage]
driver = "overlay"
graphroot = "$AISERVER_CONTAINERS_DIR/storage"
runroot = "$AISERVER_CONTAINERS_DIR/runroot"
EOC
cat > "$AISERVER_CONTAINERS_DIR/containers.conf" <<'EOC'
[containers]
# Without CAP_SYS_RESOURCE podman's default rlimits make the runtime fail ("setrlimit ... Operation not permitted").
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
# crun refuses the hybrid cgroup layout of these machines ("cgroups in hybrid mode not supported").
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOC
export CONTAINERS_STORAGE_CONF="$AISERVER_CONTAINERS_DIR/storage.conf" CONTAINERS_CONF="$AISERVER_CONTAINERS_DIR/containers.conf"
