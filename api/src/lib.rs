//! The routine-load API: CRD types, shared names and the load plan the operator validates and the
//! workers execute.

pub mod column_type;
pub mod commit_info;
pub mod crd;
pub mod delta_table;
pub mod job;
pub mod load;
pub mod load_plan;
pub mod names;
pub mod reference;
pub mod table;
pub mod table_maintenance;
pub mod table_model;
pub mod task;
pub mod value;

pub use column_type::ColumnType;
pub use job::{RoutineLoadJob, RoutineLoadJobSpec, RoutineLoadJobStatus};
pub use load::{Load, LoadSpec, LoadState, LoadStatus};
pub use load_plan::{LoadPlan, UpdateRule};
pub use table::{Table, TableSpec, TableStatus};
pub use task::{RoutineLoadTask, RoutineLoadTaskSpec, RoutineLoadTaskStatus};
