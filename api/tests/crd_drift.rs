//! The committed CRD YAML must be what the Rust types generate (run `make crds` after changing them).

#[test]
fn committed_crds_match_the_rust_types() {
    // From the working directory (cargo runs tests in the package's directory), not the
    // compile-time one: checkouts sharing a target directory share this test's build.
    let dir = std::env::current_dir()
        .expect("working directory")
        .join("../crds");
    let mut drifted = Vec::new();
    for (file, crd) in routine_load_api::crd::all() {
        let expected = routine_load_api::crd::render(&crd).expect("render CRD");
        let committed = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        if committed != expected {
            drifted.push(file);
        }
    }
    assert!(
        drifted.is_empty(),
        "crds/ is out of date for {drifted:?}: run `make crds` and commit the result"
    );
}

#[test]
fn crds_declare_status_printer_columns_and_short_names() {
    for (file, crd) in routine_load_api::crd::all() {
        let version = &crd.spec.versions[0];
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{file} has no status subresource"
        );
        assert!(
            crd.spec
                .names
                .short_names
                .as_ref()
                .is_some_and(|s| !s.is_empty()),
            "{file} has no short name"
        );
    }
    let job = <routine_load_api::RoutineLoadJob as kube::CustomResourceExt>::crd();
    let columns: Vec<String> = job.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(
        columns,
        [
            "State", "Table", "Topic", "Tasks", "Loaded", "Errors", "Lag", "Age"
        ]
    );
}
