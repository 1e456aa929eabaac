//! The CustomResourceDefinitions, rendered from the Rust types (`make crds` writes them to `crds/`).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::{Load, RoutineLoadJob, RoutineLoadTask, Table};

/// Every CRD of the API with the file name it is committed under in `crds/`.
pub fn all() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        ("tables.routineload.io.yaml", Table::crd()),
        ("routineloadjobs.routineload.io.yaml", RoutineLoadJob::crd()),
        (
            "routineloadtasks.routineload.io.yaml",
            RoutineLoadTask::crd(),
        ),
        ("loads.routineload.io.yaml", Load::crd()),
    ]
}

/// The YAML document committed for a CRD.
pub fn render(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    let body = serde_yaml::to_string(crd)?;
    Ok(format!(
        "# Generated from the Rust types in api/ by `make crds`. Do not edit.\n{body}"
    ))
}
