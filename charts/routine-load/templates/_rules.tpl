{{/* The operator's rules in the watched namespace(s). */}}
{{- define "routine-load.operatorRules" -}}
# Watch jobs and tables; patch jobs (retired task counters) and tables (the deletion finalizer).
- apiGroups: [routineload.io]
  resources: [routineloadjobs, tables]
  verbs: [get, list, watch, patch]
# Write job and table status.
- apiGroups: [routineload.io]
  resources: [routineloadjobs/status, tables/status]
  verbs: [patch]
# Assign work: create/update tasks with server-side apply, retire them with delete.
- apiGroups: [routineload.io]
  resources: [routineloadtasks]
  verbs: [get, list, watch, create, patch, delete]
# Stream Load labels: list the Loads and delete those that ended longer than
# labelKeepMaxSeconds ago, which frees their labels.
- apiGroups: [routineload.io]
  resources: [loads]
  verbs: [list, delete]
# Kafka and storage credentials that jobs and tables reference (to read Kafka metadata, table
# versions, and delete data of tables with deletionPolicy Delete).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
# Events on jobs and tables (state changes, scheduling decisions, errors).
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}

{{/* The workers' rules in the watched namespace(s). */}}
{{- define "routine-load.workerRules" -}}
# Watch the tasks assigned to this worker.
- apiGroups: [routineload.io]
  resources: [routineloadtasks]
  verbs: [get, list, watch]
# Report committed offsets, counters and heartbeats in the task status.
- apiGroups: [routineload.io]
  resources: [routineloadtasks/status]
  verbs: [patch]
# Read the job (format, columns, Kafka settings) and the table (schema, location) of a task.
- apiGroups: [routineload.io]
  resources: [routineloadjobs, tables]
  verbs: [get]
# Kafka and storage credentials that the task's job and table reference.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
# Stream Load: a Load per label (create; read, delete and re-create a cancelled one) and its
# state in the status.
- apiGroups: [routineload.io]
  resources: [loads]
  verbs: [get, create, delete]
- apiGroups: [routineload.io]
  resources: [loads/status]
  verbs: [patch]
# Events on jobs (a partition moved to an edited kafka.offsets entry).
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}
