//! The resource registry: every served Kubernetes resource, described once.
//!
//! Discovery documents, OpenAPI, request routing, storage keys and server-side
//! Table printing are all derived from [`Resource`] entries; adding a resource
//! means adding an entry to the catalog (and, when it prints more than
//! `NAME AGE`, its columns and cells in `table`).

mod catalog;
pub mod table;

pub use catalog::RESOURCES;

/// A Table column definition (`meta.k8s.io/v1` `TableColumnDefinition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Header, e.g. `Name`, `Ready`, `Age`.
    pub name: &'static str,
    /// OpenAPI type: `string`, `integer`, `number`, `boolean`.
    pub type_: &'static str,
    /// OpenAPI format, e.g. `name` for the name column, else empty.
    pub format: &'static str,
    /// Human description.
    pub description: &'static str,
    /// 0 for default columns, 1 for `-o wide` ones.
    pub priority: u8,
}

/// A subresource such as `status`, `scale`, `binding`, `eviction`, `log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subresource {
    /// Name, e.g. `status`.
    pub name: &'static str,
    /// Group of the kind it takes/returns (`""` for core).
    pub group: &'static str,
    /// Version of that kind.
    pub version: &'static str,
    /// Kind it takes/returns, e.g. `Scale`, `Binding`, `Eviction`, or the parent's kind.
    pub kind: &'static str,
    /// Verbs, e.g. `["get", "patch", "update"]`.
    pub verbs: &'static [&'static str],
}

/// One served resource of one group-version.
#[derive(Debug, Clone, Copy)]
pub struct Resource {
    /// API group, `""` for core.
    pub group: &'static str,
    /// Version, e.g. `v1`.
    pub version: &'static str,
    /// Kind, e.g. `Pod`.
    pub kind: &'static str,
    /// List kind, e.g. `PodList`.
    pub list_kind: &'static str,
    /// Plural resource name, e.g. `pods`.
    pub plural: &'static str,
    /// Singular name, e.g. `pod`.
    pub singular: &'static str,
    /// Short names, e.g. `["po"]`.
    pub short_names: &'static [&'static str],
    /// Categories, e.g. `["all"]`.
    pub categories: &'static [&'static str],
    /// Namespaced (true) or cluster-scoped.
    pub namespaced: bool,
    /// Verbs of the resource itself.
    pub verbs: &'static [&'static str],
    /// Subresources.
    pub subresources: &'static [Subresource],
    /// Table columns (the Name column included; Age is usually included too).
    pub columns: &'static [Column],
}

/// Verbs of a resource that supports everything.
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl Resource {
    /// `group/version`, or `version` for core.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The storage key prefix: `pods` for core, `deployments.apps` otherwise.
    pub fn storage_prefix(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `pods` for core, `deployments.apps` otherwise (as in error messages).
    pub fn qualified_plural(&self) -> String {
        self.storage_prefix()
    }

    /// The subresource named `name`.
    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }
}

/// The resource served at `group`/`version` with plural `plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource of a kind in a group-version (e.g. for objects in request bodies).
pub fn find_kind(group: &str, version: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// Served group-versions in preference order: `("", "v1")` first, then groups by name.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out.sort_by_key(|(g, _)| (!g.is_empty(), *g));
    out
}
