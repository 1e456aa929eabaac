//! Writes the CRD YAML into the directory given as the first argument (default `crds`).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "crds".into()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    for (file, crd) in routine_load_api::crd::all() {
        let path = dir.join(file);
        std::fs::write(&path, routine_load_api::crd::render(&crd)?)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
