"""Pod specs built by dagster-k8s' own job-construction code from the platform's configuration.

The run launcher comes from deploy/prod/dagster.yaml, the step executor from
``ml_platform.execution.executor_for``, heavy-step tags from ``TRAINING_POD_TAGS``; the V1Jobs are
what dagster-k8s would submit, and are validated against the Kubernetes schemas too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import kubernetes
import kubernetes_validate
import pytest
import yaml
from dagster_k8s import K8sRunLauncher
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import construct_dagster_k8s_job, get_user_defined_k8s_config

from ml_platform.execution import (
    DEFAULT_STEP_RESOURCES,
    K8S_SERVICE_ACCOUNT,
    PLATFORM_ENV_SECRET,
    POSTGRES_PASSWORD_KEY,
    POSTGRES_PASSWORD_SECRET,
    TRAINING_POD_TAGS,
    executor_for,
    k8s_pod_tags,
)
from ml_platform.settings import Settings, load_settings
from ml_platform_tests.dagster_internals import (
    InitExecutorContext,
    InMemoryJob,
    InstanceRef,
    ResolvedRunConfig,
)
from ml_platform_tests.k8s.conftest import KUBERNETES_VERSION, PROD_INSTANCE_DIR
from ml_platform_tests.k8s.test_instance_config import class_config

IMAGE = "europe-west1-docker.pkg.dev/ml-platform-prod/ml-platform/user-code:0123abc"

pytestmark = pytest.mark.usefixtures("prod_instance_env")


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    """A kubeconfig naming an unreachable cluster: the client loads it, nothing connects."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "unused"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return path


@pytest.fixture
def run_launcher(kubeconfig: Path) -> K8sRunLauncher:
    """The prod instance's K8sRunLauncher, config validated, pointed at the test kubeconfig."""
    ref = InstanceRef.from_dir(str(PROD_INSTANCE_DIR), config_filename="dagster.yaml")
    config = class_config(ref.run_launcher_data)
    config.update(load_incluster_config=False, kubeconfig_file=str(kubeconfig))
    return K8sRunLauncher.from_config_value(inst_data=None, config_value=config)


@pytest.fixture
def k8s_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    monkeypatch.setenv("ML_PLATFORM_EXECUTOR", "k8s")
    return Settings(deployment="prod", home=tmp_path, start_date=load_settings().start_date)


@pytest.fixture
def executor_container_context(k8s_settings: Settings, kubeconfig: Path) -> K8sContainerContext:
    """What the real k8s_job_executor builds from the platform's executor config."""
    executor_def = executor_for(k8s_settings)

    @dg.op
    def noop() -> None: ...

    @dg.job(executor_def=executor_def)
    def one_step() -> None:
        noop()

    # The executor config exactly as a run resolves it: the configured values plus defaults.
    resolved = ResolvedRunConfig.build(one_step, {}).execution.execution_engine_config
    config = {**resolved, "load_incluster_config": False, "kubeconfig_file": str(kubeconfig)}

    # A real instance; its run launcher is not a K8sRunLauncher, so the kube config above is used.
    with dg.instance_for_test() as instance:
        executor = executor_def.executor_creation_fn(
            InitExecutorContext(
                job=InMemoryJob(one_step),
                executor_def=executor_def,
                executor_config=config,
                instance=instance,
            )
        )
    return executor._step_handler._executor_container_context  # noqa: SLF001


def step_job(
    run_launcher: K8sRunLauncher, executor_context: K8sContainerContext, tags: dict[str, str]
) -> dict[str, Any]:
    """The step pod's Job, merged as K8sStepHandler._get_container_context merges it."""
    run = dg.DagsterRun(job_name="data_pipeline", run_id="0a1b2c3d-0000-4000-8000-000000000000")
    context = (
        K8sContainerContext.create_for_run(run, run_launcher, include_run_tags=False)
        .merge(executor_context)
        .merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(tags)))
    )
    job = construct_dagster_k8s_job(
        job_config=context.get_k8s_job_config(IMAGE, run_launcher),
        args=["dagster", "api", "execute_step"],
        job_name="dagster-step-0a1b2c3d",
        pod_name="dagster-step-0a1b2c3d",
        component="step_worker",
        user_defined_k8s_config=context.run_k8s_config,
        labels={"dagster/job": run.job_name, "dagster/op": "train_model"},
        env_vars=[{"name": "DAGSTER_RUN_STEP_KEY", "value": "train_model"}],
    )
    return as_manifest(job)


def as_manifest(job: kubernetes.client.V1Job) -> dict[str, Any]:
    manifest = kubernetes.client.ApiClient().sanitize_for_serialization(job)
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    return manifest


def container(manifest: dict[str, Any]) -> dict[str, Any]:
    containers = manifest["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def assert_secret_sourced_env(manifest: dict[str, Any]) -> None:
    spec = manifest["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == K8S_SERVICE_ACCOUNT
    main = container(manifest)
    assert {"secretRef": {"name": PLATFORM_ENV_SECRET}} in main["envFrom"]
    password = [e for e in main["env"] if e["name"] == "DAGSTER_PG_PASSWORD"]
    assert password == [
        {
            "name": "DAGSTER_PG_PASSWORD",
            "valueFrom": {
                "secretKeyRef": {"name": POSTGRES_PASSWORD_SECRET, "key": POSTGRES_PASSWORD_KEY}
            },
        }
    ]
    # Nothing secret is inlined as a plain value.
    assert all("PASSWORD" not in e["name"] or "value" not in e for e in main["env"])


def test_training_steps_get_their_own_pod_resources(
    run_launcher: K8sRunLauncher, executor_container_context: K8sContainerContext
) -> None:
    manifest = step_job(run_launcher, executor_container_context, TRAINING_POD_TAGS)
    assert container(manifest)["image"] == IMAGE
    assert container(manifest)["resources"] == {
        "requests": {"cpu": "2", "memory": "4Gi"},
        "limits": {"memory": "4Gi"},
    }
    assert_secret_sourced_env(manifest)


def test_ordinary_steps_get_the_executor_defaults(
    run_launcher: K8sRunLauncher, executor_container_context: K8sContainerContext
) -> None:
    manifest = step_job(run_launcher, executor_container_context, {})
    assert container(manifest)["resources"] == DEFAULT_STEP_RESOURCES
    assert_secret_sourced_env(manifest)


def test_node_selector_tags_reach_the_pod_spec(
    run_launcher: K8sRunLauncher, executor_container_context: K8sContainerContext
) -> None:
    tags = k8s_pod_tags("4", "16Gi", node_selector={"cloud.google.com/gke-nodepool": "highmem"})
    manifest = step_job(run_launcher, executor_container_context, tags)
    spec = manifest["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"cloud.google.com/gke-nodepool": "highmem"}
    assert container(manifest)["resources"]["requests"] == {"cpu": "4", "memory": "16Gi"}


def test_run_pods_come_from_the_prod_run_launcher(run_launcher: K8sRunLauncher) -> None:
    run = dg.DagsterRun(job_name="data_pipeline", run_id="0a1b2c3d-0000-4000-8000-000000000001")
    context = run_launcher.get_container_context_for_run(run)
    job = construct_dagster_k8s_job(
        job_config=context.get_k8s_job_config(IMAGE, run_launcher),
        args=["dagster", "api", "execute_run"],
        job_name="dagster-run-0a1b2c3d",
        component="run_worker",
        user_defined_k8s_config=context.run_k8s_config,
    )
    manifest = as_manifest(job)
    assert container(manifest)["resources"] == {
        "requests": {"cpu": "250m", "memory": "1Gi"},
        "limits": {"memory": "2Gi"},
    }
    assert_secret_sourced_env(manifest)


def test_executor_is_in_process_unless_asked(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("ML_PLATFORM_EXECUTOR", raising=False)
    settings = Settings(deployment="local", home=tmp_path, start_date=load_settings().start_date)
    assert executor_for(settings) is dg.in_process_executor


def test_k8s_executor_needs_the_prod_deployment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ML_PLATFORM_EXECUTOR", "k8s")
    settings = Settings(deployment="local", home=tmp_path, start_date=load_settings().start_date)
    with pytest.raises(ValueError, match="ML_PLATFORM_DEPLOYMENT=prod"):
        executor_for(settings)


def test_unknown_executor_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ML_PLATFORM_EXECUTOR", "celery")
    settings = Settings(deployment="prod", home=tmp_path, start_date=load_settings().start_date)
    with pytest.raises(ValueError, match="'celery'"):
        executor_for(settings)


def test_pod_tags_are_valid_dagster_k8s_config() -> None:
    """dagster-k8s validates the tag JSON against its own schema when it reads it."""
    config = get_user_defined_k8s_config(TRAINING_POD_TAGS)
    assert config.container_config["resources"]["requests"] == {"cpu": "2", "memory": "4Gi"}
