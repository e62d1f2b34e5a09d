"""One reader per section: each reads its keys, records every problem, and builds its frozen section.

The rules that tie keys of different sections together are in
components/config/across.py; the rules on single values in rules.py and
addresses.py.
"""

from __future__ import annotations

import ipaddress

from components.config.addresses import egress_entry, egress_range_problem, endpoint_problems
from components.config.derived import (
    SCALEWAY_REGIONS,
    STORAGE_PROVIDERS,
    default_namespace,
    storage_location,
)
from components.config.model import (
    AdminConfig,
    BackupsConfig,
    ClusterConfig,
    CvatConfig,
    IngressConfig,
    NetworkConfig,
    StorageConfig,
)
from components.config.reader import Reader
from components.config.rules import (
    DJANGO_USERNAME_RE,
    DNS_LABEL_RE,
    REGION_RE,
    access_key_problem,
    bucket_name_problem,
    cron_problem,
    csi_driver_problem,
    description_problem,
    email_problem,
    hostname_problem,
    image_reference_problem,
    namespace_problem,
    object_name_problem,
    restore_source_problem,
)
from components.cvat_release import RELEASES
from components.endpoint import S3Endpoint
from components.label_schema import parse_projects
from components.sizes import SIZES

# Optional CVAT queues, served by one extra worker; the others always run.
OPTIONAL_QUEUES = ("annotation", "webhooks", "quality_reports", "consensus")
DATA_ACCESS_MODES = ("ReadWriteOnce", "ReadWriteMany")
# How CVAT reaches the dataset buckets: registered cloud storages, a mounted share, or both.
DATASET_ACCESS = ("cloudStorage", "share", "both")
MAX_RETENTION_DAYS = 3650


def read_storage(read: Reader) -> StorageConfig:
    """storageProvider, storageRegion, storageEndpoint, the keys, minioInCluster, minioImage and the
    dataset buckets; builds the S3 endpoint every other part uses."""
    provider = read.string("storageProvider").lower()
    if provider not in STORAGE_PROVIDERS:
        read.problem("storageProvider", f"{provider!r} is not one of {', '.join(STORAGE_PROVIDERS)}")
    in_cluster = read.boolean("minioInCluster")
    configured_region = read.string("storageRegion")
    endpoint = read.string("storageEndpoint").rstrip("/")
    access_key = read.string("storageAccessKey")
    if access_key:
        read.check("storageAccessKey", access_key, access_key_problem)
    secret_key = read.secret("storageSecretKey")
    _, region, url = storage_location(provider, configured_region, endpoint)
    _check_region(read, provider, region, in_cluster)
    if in_cluster:
        # The in-cluster server's URL and generated keys are used; a value here would be ignored.
        for key, value in (("storageEndpoint", endpoint), ("storageAccessKey", access_key)):
            if value:
                read.problem(key, "must not be set with minioInCluster (the in-cluster MinIO is used)")
        if secret_key is not None:
            read.problem("storageSecretKey", "must not be set with minioInCluster (its keys are generated)")
    else:
        _check_external_server(read, provider, endpoint, access_key, secret_key is not None)
    minio_image = read.string("minioImage")
    if minio_image:
        if not in_cluster:
            read.problem("minioImage", "only means something with minioInCluster (the development stack)")
        read.check("minioImage", minio_image, image_reference_problem)
    return StorageConfig(
        provider=provider,
        region=region,
        configured_endpoint=endpoint,
        access_key=access_key,
        secret_key=secret_key,
        minio_in_cluster=in_cluster,
        minio_image=minio_image,
        dataset_buckets=tuple(_dataset_buckets(read)),
        dataset_inventory_limit=read.integer("datasetInventoryLimit", minimum=1),
        endpoint=None if in_cluster or not url else S3Endpoint.from_settings(provider, region, url, access_key, secret_key),
        secret_key_plain=read.plain("storageSecretKey") if not in_cluster else "",
    )


def _check_region(read: Reader, provider: str, region: str, in_cluster: bool) -> None:
    """The region each provider takes; the in-cluster MinIO is a MinIO."""
    if provider == "scaleway":
        if region not in SCALEWAY_REGIONS:
            read.problem("storageRegion", f"{region!r} is not a Scaleway region ({', '.join(SCALEWAY_REGIONS)})")
        if in_cluster:
            read.problem("minioInCluster", "requires storageProvider 'minio'")
    elif provider == "minio" and not REGION_RE.fullmatch(region):
        read.problem("storageRegion", f"{region!r} is not a region name (lowercase letters, digits, hyphens)")


def _check_external_server(read: Reader, provider: str, endpoint: str, access_key: str, has_secret: bool) -> None:
    """An object storage outside the cluster: a usable endpoint (derived for Scaleway) and both keys."""
    if endpoint:
        for reason in endpoint_problems(endpoint):
            read.problem("storageEndpoint", reason)
    elif provider == "minio":
        read.problem("storageEndpoint", "is required for an external MinIO server (e.g. https://minio.example.com)")
    if not access_key:
        read.problem("storageAccessKey", "is required unless minioInCluster is true")
    if not has_secret:
        read.problem("storageSecretKey", "is required unless minioInCluster is true (set it with --secret)")


def _dataset_buckets(read: Reader) -> list[str]:
    """datasetBuckets: valid bucket names, each listed once."""
    buckets = read.string_list("datasetBuckets")
    seen: set[str] = set()
    for bucket in buckets:
        read.check("datasetBuckets", bucket, bucket_name_problem)
        if bucket in seen:
            read.problem("datasetBuckets", f"{bucket!r} is listed twice")
        seen.add(bucket)
    return buckets


def read_backups(read: Reader) -> BackupsConfig:
    """backupBucket, backupRetentionDays, backupSchedule, restoreFrom and restoreForce."""
    bucket = read.string("backupBucket")
    if bucket:
        read.check("backupBucket", bucket, bucket_name_problem)
    retention = read.integer("backupRetentionDays", minimum=1, maximum=MAX_RETENTION_DAYS)
    schedule = " ".join(read.string("backupSchedule").split())
    read.check("backupSchedule", schedule, cron_problem)
    restore_from = read.string("restoreFrom")
    if restore_from:
        read.check("restoreFrom", restore_from, restore_source_problem)
    restore_force = read.boolean("restoreForce")
    if restore_force and not restore_from:
        read.problem("restoreForce", "only means something with restoreFrom")
    return BackupsConfig(
        bucket=bucket, retention_days=retention, schedule=schedule, restore_from=restore_from, restore_force=restore_force
    )


def read_cvat(read: Reader) -> CvatConfig:
    """description, cvatVersion, size, workers, the volumes, how CVAT reaches the datasets, and projects."""
    description = read.string("description")
    read.check("description", description, description_problem)
    version = read.string("cvatVersion")
    if version not in RELEASES:
        read.problem(
            "cvatVersion",
            f"{version!r} is not a release this program knows the deployment contract of "
            f"(known: {', '.join(RELEASES)}; see 'Adding a CVAT release' in CONTRIBUTING.md for adding one)",
        )
    size = read.string("size").lower()
    if size not in SIZES:
        read.problem("size", f"{size!r} is not one of {', '.join(SIZES)}")
    workers = _workers(read)
    data_size = read.size("cvatDataSize", minimum_gib=1)
    access_mode = read.string("cvatDataAccessMode")
    if access_mode not in DATA_ACCESS_MODES:
        read.problem("cvatDataAccessMode", f"{access_mode!r} is not one of {', '.join(DATA_ACCESS_MODES)}")
    database_size = read.size("databaseStorageSize", minimum_gib=1)
    dataset_access = read.string("datasetAccess")
    if dataset_access not in DATASET_ACCESS:
        read.problem("datasetAccess", f"{dataset_access!r} is not one of {', '.join(DATASET_ACCESS)}")
    csi_driver = read.string("datasetCsiDriver")
    read.check("datasetCsiDriver", csi_driver, csi_driver_problem)
    projects, schema_problems = parse_projects(read.raw("projects"))
    for problem in schema_problems:
        read.problem("projects", problem)
    return CvatConfig(
        description=description,
        version=version,
        size=size,
        workers=tuple(workers),
        data_size=data_size,
        data_access_mode=access_mode,
        database_storage_size=database_size,
        dataset_access=dataset_access,
        dataset_csi_driver=csi_driver,
        projects=tuple(projects),
    )


def _workers(read: Reader) -> list[str]:
    """workers: optional queues, each once."""
    workers = read.string_list("workers")
    for queue in workers:
        if queue not in OPTIONAL_QUEUES:
            read.problem("workers", f"{queue!r} is not an optional CVAT queue ({', '.join(OPTIONAL_QUEUES)}); import, export, chunks and utils always run")
    if len(set(workers)) != len(workers):
        read.problem("workers", "lists a queue twice")
    return workers


def read_admin(read: Reader) -> AdminConfig:
    """adminUsername, adminEmail and adminPassword (a secret, never shown in a message)."""
    username = read.string("adminUsername")
    if not DJANGO_USERNAME_RE.fullmatch(username):
        read.problem("adminUsername", f"{username!r} must be 1 to 150 letters, digits or @.+-_")
    email = read.string("adminEmail")
    if email:
        read.check("adminEmail", email, email_problem)
    password = read.secret("adminPassword")
    plain = read.plain("adminPassword")
    if password is not None and (len(plain) < 8 or plain.isdigit()):
        # Mirrors Django's default validators, which the superuser step bypasses.
        read.problem("adminPassword", "must be at least 8 characters and not only digits")
    if password is not None and plain != plain.strip():
        # CVAT's login serializer trims the password it is given (DRF CharField): the admin could
        # never log in, nor could the bootstrap Job.
        read.problem("adminPassword", "starts or ends with whitespace, which CVAT's login trims: the admin could never log in")
    return AdminConfig(username=username, email=email, password=password)


def read_ingress(read: Reader) -> IngressConfig:
    """hostname, the ingress class, TLS (a Secret or cert-manager), plain http, and who may reach CVAT."""
    hostname = read.string("hostname")
    if hostname:
        read.check("hostname", hostname, hostname_problem)
    class_name = read.string("ingressClassName")
    tls_secret = read.string("tlsSecretName")
    issuer = read.string("certManagerIssuer")
    for key, value in (("ingressClassName", class_name), ("tlsSecretName", tls_secret), ("certManagerIssuer", issuer)):
        if value:
            read.check(key, value, object_name_problem)
    allow_insecure_http = read.boolean("allowInsecureHttp")
    local_host = hostname == "localhost" or hostname.endswith(".localhost")
    if hostname and not (tls_secret or issuer or local_host or allow_insecure_http):
        read.problem(
            "hostname",
            f"{hostname!r} would serve logins and passwords over plain http: set certManagerIssuer or tlsSecretName, "
            "or allowInsecureHttp: true if something in front terminates TLS (or for a private test)",
        )
    if tls_secret and issuer:
        read.problem("tlsSecretName", "set either tlsSecretName or certManagerIssuer, not both")
        read.problem("certManagerIssuer", "set either tlsSecretName or certManagerIssuer, not both")
    return IngressConfig(
        hostname=hostname,
        class_name=class_name,
        tls_secret_name=tls_secret,
        cert_manager_issuer=issuer,
        allow_insecure_http=allow_insecure_http,
        namespaces=tuple(_ingress_namespaces(read)),
        allow_cidrs=tuple(_ingress_cidrs(read)),
    )


def _ingress_namespaces(read: Reader) -> list[str]:
    """ingressNamespaces: namespace names, at least one when set."""
    namespaces = read.string_list("ingressNamespaces")
    if not namespaces and read.is_set("ingressNamespaces") and not read.has_problem("ingressNamespaces"):
        read.problem("ingressNamespaces", "must name at least one namespace: nothing could reach the annotation server")
    for name in namespaces:
        if not DNS_LABEL_RE.fullmatch(name):
            read.problem("ingressNamespaces", f"{name!r} is not a namespace name (a DNS-1123 label)")
    return namespaces


def _ingress_cidrs(read: Reader) -> list[str]:
    """ingressAllowCidrs: CIDR ranges (an address becomes its /32 or /128), none admitting everyone."""
    cidrs: list[str] = []
    for entry in read.string_list("ingressAllowCidrs"):
        canonical, reason = egress_entry(entry)
        if reason:
            read.problem("ingressAllowCidrs", reason.replace("IP address or CIDR range", "CIDR range"))
            continue
        network = ipaddress.ip_network(canonical)
        if network.prefixlen == 0:
            read.problem("ingressAllowCidrs", f"{entry!r} would admit every address: name the controller's nodes or load balancer")
        elif str(network) not in cidrs:
            cidrs.append(str(network))
    return cidrs


def read_network(read: Reader) -> NetworkConfig:
    """egressAllow: addresses and ranges in canonical form, each once, none too wide."""
    egress_allow: list[str] = []
    for entry in read.string_list("egressAllow"):
        canonical, reason = egress_entry(entry)
        reason = reason or egress_range_problem(canonical)
        if reason:
            read.problem("egressAllow", reason)
        elif canonical not in egress_allow:
            egress_allow.append(canonical)
    return NetworkConfig(egress_allow=tuple(egress_allow))


def read_cluster(read: Reader, stack: str) -> ClusterConfig:
    """kubeContext, namespace (default cvat-<stack>), storageClassName and paused."""
    namespace = read.string("namespace")
    if namespace:
        read.check("namespace", namespace, namespace_problem)
    else:
        namespace = default_namespace(stack)
    storage_class = read.string("storageClassName")
    if storage_class:
        read.check("storageClassName", storage_class, object_name_problem)
    return ClusterConfig(
        kube_context=read.string("kubeContext"),
        namespace=namespace,
        storage_class_name=storage_class,
        paused=read.boolean("paused"),
    )
