//! Loads out-of-tree Filter/Score plugins (`.so` files built with `kubernel-scheduler-sdk`).
//!
//! A file loaded for the first time is opened where it is; a path or inode loaded
//! before is first copied to a unique file in the scratch directory, since glibc
//! would hand back the already loaded library (the old code of a plugin rebuilt in
//! place). Libraries are never `dlclose`d (see `plugin-abi.md`): a handle replaced
//! by a swap stays mapped until the process exits.
//!
//! Checks before any call: the descriptor symbol exists, magic, ABI version, the
//! descriptor's size, SDK major.minor and target triple. A different rustc is only
//! logged: no Rust layout crosses this ABI.

#![allow(unsafe_code)]

mod adapter;

use std::collections::HashSet;
use std::io::Read;
use std::mem::ManuallyDrop;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kubernel_scheduler_sdk::abi::{
    point, Descriptor, Header, ABI_VERSION, BUILD_RUSTC, BUILD_TARGET, DESCRIPTOR_SYMBOL, MAGIC,
    SDK_VERSION,
};

pub use adapter::ExternalPlugin;

use crate::config::ExternalPluginConfig;
use crate::framework::{Factory, PluginError, Registry};

/// A library could not be loaded as a scheduler plugin; the message names the file.
///
/// Retrying does not help until the file changes.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Reading or copying the file failed (also: no such file).
    #[error("{path}: {source}")]
    Io {
        /// Library path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not an ELF shared object.
    #[error("{path}: not an ELF shared object")]
    NotElf {
        /// Library path.
        path: PathBuf,
    },
    /// `dlopen` refused the file.
    #[error("{path}: cannot load: {message}")]
    Open {
        /// Library path.
        path: PathBuf,
        /// The dynamic loader's message.
        message: String,
    },
    /// The library exports no scheduler plugin descriptor.
    #[error("{path}: not a kubernel scheduler plugin: no symbol KUBERNEL_SCHEDULER_PLUGIN")]
    NoDescriptor {
        /// Library path.
        path: PathBuf,
    },
    /// The descriptor does not start with the scheduler plugin magic.
    #[error("{path}: not a kubernel scheduler plugin: descriptor magic is {found:#018x}, expected {MAGIC:#018x} (\"KSCHEDPL\")")]
    BadMagic {
        /// Library path.
        path: PathBuf,
        /// Magic found.
        found: u64,
    },
    /// ABI versions differ.
    #[error("{path}: scheduler plugin ABI version mismatch: plugin has ABI {plugin}, this scheduler has ABI {host}; rebuild the plugin against kubernel-scheduler-sdk {SDK_VERSION}")]
    AbiMismatch {
        /// Library path.
        path: PathBuf,
        /// Plugin's ABI version.
        plugin: u32,
        /// Host's ABI version.
        host: u32,
    },
    /// The descriptor is smaller than this host's.
    #[error("{path}: descriptor is {found} bytes, this scheduler needs at least {needed}")]
    DescriptorTooSmall {
        /// Library path.
        path: PathBuf,
        /// Declared size.
        found: u32,
        /// Needed size.
        needed: u32,
    },
    /// SDK major.minor differ.
    #[error("{path}: built with kubernel-scheduler-sdk {plugin}, this scheduler has {SDK_VERSION}; rebuild the plugin")]
    SdkMismatch {
        /// Library path.
        path: PathBuf,
        /// Plugin's SDK version.
        plugin: String,
    },
    /// Built for another target.
    #[error("{path}: built for target {plugin}, this scheduler runs on {BUILD_TARGET}")]
    TargetMismatch {
        /// Library path.
        path: PathBuf,
        /// Plugin's target.
        plugin: String,
    },
    /// The plugin implements neither filter nor score.
    #[error("{path}: plugin {name:?} implements neither filter nor score")]
    NoPoints {
        /// Library path.
        path: PathBuf,
        /// Plugin name.
        name: String,
    },
    /// The name is already registered (in-tree or another library).
    #[error("external plugin {0:?}: a plugin of that name is already registered")]
    Duplicate(String),
}

/// A loaded, validated scheduler plugin library. Never unloaded.
pub struct ExternalLibrary {
    _lib: ManuallyDrop<libloading::Library>,
    desc: &'static Descriptor,
    /// The path it was loaded from (before any copy).
    pub path: PathBuf,
    /// The descriptor's plugin name.
    pub plugin_name: String,
    /// The plugin's version.
    pub version: String,
    /// The rustc that built it.
    pub rustc: String,
}

impl std::fmt::Debug for ExternalLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ExternalLibrary({} {} from {})",
            self.plugin_name,
            self.version,
            self.path.display()
        )
    }
}

static LOAD_SEQ: AtomicU64 = AtomicU64::new(0);
/// Canonical paths and (device, inode) pairs handed to `dlopen` so far.
type LoadedFiles = (HashSet<PathBuf>, HashSet<(u64, u64)>);

static LOADED: Mutex<Option<LoadedFiles>> = Mutex::new(None);

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LoadError + '_ {
    move |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Records `path` as loaded; true when it (or the same inode) was loaded before.
fn seen_before(path: &Path) -> Result<bool, LoadError> {
    let canonical = path.canonicalize().map_err(io(path))?;
    let md = std::fs::metadata(&canonical).map_err(io(path))?;
    let mut guard = LOADED.lock().unwrap_or_else(|p| p.into_inner());
    let (paths, inodes) = guard.get_or_insert_with(Default::default);
    let new_path = paths.insert(canonical);
    let new_inode = inodes.insert((md.dev(), md.ino()));
    Ok(!(new_path && new_inode))
}

fn major_minor(v: &str) -> &str {
    match v.match_indices('.').nth(1) {
        Some((i, _)) => &v[..i],
        None => v,
    }
}

impl ExternalLibrary {
    /// Loads and validates `path`, through a copy in `scratch_dir` when it was loaded before.
    pub fn load(path: &Path, scratch_dir: &Path) -> Result<Arc<ExternalLibrary>, LoadError> {
        let mut head = Vec::with_capacity(4);
        std::fs::File::open(path)
            .and_then(|f| f.take(4).read_to_end(&mut head))
            .map_err(io(path))?;
        if head != b"\x7fELF" {
            return Err(LoadError::NotElf {
                path: path.to_path_buf(),
            });
        }
        if !seen_before(path)? {
            return Self::open(path, path).map(Arc::new);
        }
        std::fs::create_dir_all(scratch_dir).map_err(io(scratch_dir))?;
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("plugin");
        let seq = LOAD_SEQ.fetch_add(1, Ordering::Relaxed);
        let copy = scratch_dir.join(format!("{stem}.{}.{seq}.so", std::process::id()));
        std::fs::copy(path, &copy).map_err(io(path))?;
        let opened = Self::open(path, &copy);
        // The mapping outlives the file.
        let _ = std::fs::remove_file(&copy);
        opened.map(Arc::new)
    }

    fn open(path: &Path, file: &Path) -> Result<ExternalLibrary, LoadError> {
        let p = || path.to_path_buf();
        let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL;
        // SAFETY: loading runs the library's initialisers; we only load files the
        // operator configured, and SDK plugins have none beyond std's.
        let lib =
            unsafe { libloading::os::unix::Library::open(Some(file), flags) }.map_err(|e| {
                LoadError::Open {
                    path: p(),
                    message: e
                        .to_string()
                        .replace(&file.display().to_string(), &path.display().to_string()),
                }
            })?;
        let lib: libloading::Library = lib.into();
        // SAFETY: only the symbol's address is read here; it is dereferenced below
        // as the 16-byte header every descriptor version starts with.
        let sym = unsafe { lib.get::<*const Header>(DESCRIPTOR_SYMBOL) }
            .map_err(|_| LoadError::NoDescriptor { path: p() })?;
        let header_ptr: *const Header = *sym;
        // SAFETY: the symbol is a static of a library we never unload; every
        // descriptor starts with a `Header`.
        let header = unsafe { header_ptr.read_unaligned() };
        if header.magic != MAGIC {
            return Err(LoadError::BadMagic {
                path: p(),
                found: header.magic,
            });
        }
        if header.abi_version != ABI_VERSION {
            return Err(LoadError::AbiMismatch {
                path: p(),
                plugin: header.abi_version,
                host: ABI_VERSION,
            });
        }
        let needed = std::mem::size_of::<Descriptor>() as u32;
        if header.size < needed {
            return Err(LoadError::DescriptorTooSmall {
                path: p(),
                found: header.size,
                needed,
            });
        }
        // SAFETY: magic, ABI version and size say the full descriptor of this layout
        // is present; the library is never unloaded, so `'static` holds.
        let desc: &'static Descriptor = unsafe { &*(header_ptr as *const Descriptor) };
        let sdk = desc.sdk_version.to_string_lossy();
        if major_minor(&sdk) != major_minor(SDK_VERSION) {
            return Err(LoadError::SdkMismatch {
                path: p(),
                plugin: sdk,
            });
        }
        let target = desc.target.to_string_lossy();
        if target != BUILD_TARGET {
            return Err(LoadError::TargetMismatch {
                path: p(),
                plugin: target,
            });
        }
        let name = desc.name.to_string_lossy();
        if desc.points & (point::FILTER | point::SCORE) == 0 {
            return Err(LoadError::NoPoints { path: p(), name });
        }
        let rustc = desc.rustc_version.to_string_lossy();
        if rustc != BUILD_RUSTC {
            tracing::warn!(path = %path.display(), plugin = %name, plugin_rustc = %rustc, host_rustc = BUILD_RUSTC,
                "scheduler plugin built with another rustc; accepted (only C types cross the ABI)");
        }
        Ok(ExternalLibrary {
            _lib: ManuallyDrop::new(lib),
            desc,
            path: path.to_path_buf(),
            plugin_name: name,
            version: desc.version.to_string_lossy(),
            rustc,
        })
    }

    /// Wraps a descriptor compiled into this process (tests of the adapter without `dlopen`).
    #[cfg(test)]
    pub(crate) fn from_static(desc: &'static Descriptor) -> Arc<ExternalLibrary> {
        let lib: libloading::Library = libloading::os::unix::Library::this().into();
        Arc::new(ExternalLibrary {
            _lib: ManuallyDrop::new(lib),
            desc,
            path: PathBuf::from("(in process)"),
            plugin_name: desc.name.to_string_lossy(),
            version: desc.version.to_string_lossy(),
            rustc: desc.rustc_version.to_string_lossy(),
        })
    }

    /// Whether the plugin implements Filter.
    pub fn has_filter(&self) -> bool {
        self.desc.points & point::FILTER != 0
    }

    /// Whether the plugin implements Score.
    pub fn has_score(&self) -> bool {
        self.desc.points & point::SCORE != 0
    }

    /// A registry factory creating instances named `name`; `args` reach the plugin as JSON.
    pub fn factory(self: &Arc<Self>, name: &str) -> Factory {
        let lib = self.clone();
        let name = name.to_string();
        Arc::new(move |args, _ctx| {
            let json = match args {
                None => "null".to_string(),
                Some(v) => serde_json::to_string(v).map_err(|e| PluginError::BadArgs {
                    plugin: name.clone(),
                    message: e.to_string(),
                })?,
            };
            Ok(ExternalPlugin::create(lib.clone(), &name, &json)?.into_instance())
        })
    }
}

/// Loads every configured library and registers it; a name already registered is refused.
pub fn register_external(
    registry: &mut Registry,
    plugins: &[ExternalPluginConfig],
    scratch_dir: &Path,
) -> Result<Vec<Arc<ExternalLibrary>>, LoadError> {
    let mut loaded = Vec::new();
    for p in plugins {
        let lib = ExternalLibrary::load(&p.path, scratch_dir)?;
        registry
            .register(&p.name, lib.factory(&p.name))
            .map_err(|_| LoadError::Duplicate(p.name.clone()))?;
        loaded.push(lib);
    }
    Ok(loaded)
}

/// Loads `path` again and replaces plugin `name` in the registry (hot swap of one `.so`);
/// apply it with [`crate::core::Scheduler::reconfigure`].
pub fn swap_external(
    registry: &mut Registry,
    name: &str,
    path: &Path,
    scratch_dir: &Path,
) -> Result<Arc<ExternalLibrary>, LoadError> {
    let lib = ExternalLibrary::load(path, scratch_dir)?;
    registry.replace(name, lib.factory(name));
    Ok(lib)
}

#[cfg(test)]
mod tests;
