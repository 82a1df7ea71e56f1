//! Loads plugin libraries, validates their descriptors, and calls their entry points.
//!
//! A file loaded for the first time is opened where it is. A file whose path or
//! inode was loaded before is first copied to a unique file under
//! `<data_dir>/plugins/`: glibc would otherwise hand back the already loaded
//! library (for a plugin rebuilt in place, the old code), and two instances of one
//! library would share its statics (logger, panic hook, registries). Libraries are
//! never `dlclose`d.

#![allow(unsafe_code)]

use std::collections::HashSet;
use std::ffi::c_void;
use std::io::Read;
use std::mem::ManuallyDrop;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::bus::Envelope;
use kubernel_abi::{
    Bytes, DescriptorHeader, HostVtable, Instance, OutBuf, PluginDescriptor, Status,
    ABI_CRATE_VERSION, ABI_VERSION, BUILD_TARGET, DESCRIPTOR_SYMBOL, MAGIC,
};

/// A library could not be loaded as a plugin; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// No file at the path.
    #[error("{path}: no such file")]
    NotFound {
        /// Library path.
        path: PathBuf,
    },
    /// The path is a directory or another non-file.
    #[error("{path}: not a regular file")]
    NotAFile {
        /// Library path.
        path: PathBuf,
    },
    /// The file is not an ELF object.
    #[error("{path}: not an ELF shared object (starts with {head:02x?})")]
    NotElf {
        /// Library path.
        path: PathBuf,
        /// First bytes of the file.
        head: Vec<u8>,
    },
    /// Copying or reading the file failed.
    #[error("{path}: {source}")]
    Io {
        /// Library path.
        path: PathBuf,
        /// I/O error.
        source: std::io::Error,
    },
    /// `dlopen` refused the file.
    #[error("{path}: cannot load: {message}")]
    Open {
        /// Library path.
        path: PathBuf,
        /// The dynamic loader's message.
        message: String,
    },
    /// The library exports no descriptor.
    #[error("{path}: not a kubernel plugin: no descriptor symbol KUBERNEL_PLUGIN")]
    NoDescriptor {
        /// Library path.
        path: PathBuf,
    },
    /// The descriptor does not start with the kubernel magic.
    #[error("{path}: not a kubernel plugin: descriptor magic is {found:#018x}, expected {MAGIC:#018x} (\"KUBERNEL\")")]
    BadMagic {
        /// Library path.
        path: PathBuf,
        /// Magic found.
        found: u64,
    },
    /// ABI or SDK versions differ.
    #[error("{path}: ABI version mismatch: plugin has ABI {plugin_abi} (kubernel-abi {plugin_sdk}), kernel has ABI {kernel_abi} (kubernel-abi {kernel_sdk}); rebuild the plugin against this kernel's SDK")]
    AbiMismatch {
        /// Library path.
        path: PathBuf,
        /// Plugin's ABI version.
        plugin_abi: u32,
        /// Kernel's ABI version.
        kernel_abi: u32,
        /// Plugin's kubernel-abi crate version.
        plugin_sdk: String,
        /// Kernel's kubernel-abi crate version.
        kernel_sdk: String,
    },
    /// The descriptor is shorter than the kernel's.
    #[error("{path}: descriptor is {found} bytes, this kernel needs at least {needed}")]
    DescriptorTooSmall {
        /// Library path.
        path: PathBuf,
        /// Declared size.
        found: u32,
        /// Needed size.
        needed: u32,
    },
    /// Built for another target triple.
    #[error("{path}: built for target {plugin}, this kernel runs on {kernel}")]
    TargetMismatch {
        /// Library path.
        path: PathBuf,
        /// Plugin's target.
        plugin: String,
        /// Kernel's target.
        kernel: String,
    },
}

/// Identity of a loaded plugin library, read from its descriptor.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginMeta {
    /// Plugin type name.
    pub plugin: String,
    /// Component kind.
    pub kind: String,
    /// Plugin version.
    pub version: String,
    /// kubernel-abi version the plugin was built with.
    pub sdk_version: String,
    /// rustc of the plugin's build.
    pub rustc: String,
    /// Snapshot format version.
    pub state_version: u32,
}

/// A loaded, validated plugin library. Never unloaded.
pub struct Library {
    _lib: ManuallyDrop<libloading::Library>,
    desc: PluginDescriptor,
    /// The path the library was loaded from (before copying).
    pub path: PathBuf,
    /// What its descriptor says.
    pub meta: PluginMeta,
}

static LOAD_SEQ: AtomicU64 = AtomicU64::new(0);

/// Paths and (device, inode) pairs already handed to `dlopen` by this process.
static LOADED: parking_lot::Mutex<Option<LoadedFiles>> = parking_lot::Mutex::new(None);

/// Canonical paths and (device, inode) pairs.
type LoadedFiles = (HashSet<PathBuf>, HashSet<(u64, u64)>);

/// Records `path` as loaded; true when it (or the same file under another path) was loaded before.
fn seen_before(path: &Path) -> Result<bool, LoadError> {
    let canonical = path.canonicalize().map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let md = std::fs::metadata(&canonical).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut loaded = LOADED.lock();
    let (paths, inodes) = loaded.get_or_insert_with(Default::default);
    let new_path = paths.insert(canonical);
    let new_inode = inodes.insert((md.dev(), md.ino()));
    Ok(!(new_path && new_inode))
}

fn check_file(path: &Path) -> Result<(), LoadError> {
    let md = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => LoadError::NotFound {
            path: path.to_path_buf(),
        },
        _ => LoadError::Io {
            path: path.to_path_buf(),
            source: e,
        },
    })?;
    if !md.is_file() {
        return Err(LoadError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mut head = Vec::with_capacity(4);
    std::fs::File::open(path)
        .and_then(|f| f.take(4).read_to_end(&mut head))
        .map_err(|source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if head != b"\x7fELF" {
        return Err(LoadError::NotElf {
            path: path.to_path_buf(),
            head,
        });
    }
    Ok(())
}

/// Major.minor of a semver string, for SDK compatibility checks.
fn major_minor(v: &str) -> &str {
    match v.match_indices('.').nth(1) {
        Some((i, _)) => &v[..i],
        None => v,
    }
}

impl Library {
    /// Loads `path` (through a copy in `scratch_dir` when it was loaded before) and
    /// validates its descriptor.
    pub fn load(path: &Path, scratch_dir: &Path) -> Result<Library, LoadError> {
        check_file(path)?;
        if !seen_before(path)? {
            return Self::open(path, path);
        }
        std::fs::create_dir_all(scratch_dir).map_err(|source| LoadError::Io {
            path: scratch_dir.to_path_buf(),
            source,
        })?;
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("plugin");
        let seq = LOAD_SEQ.fetch_add(1, Ordering::Relaxed);
        let copy = scratch_dir.join(format!("{stem}.{}.{seq}.so", std::process::id()));
        std::fs::copy(path, &copy).map_err(|source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let opened = Self::open(path, &copy);
        // The mapping outlives the file; removing it keeps the data dir clean.
        let _ = std::fs::remove_file(&copy);
        opened
    }

    fn open(path: &Path, copy: &Path) -> Result<Library, LoadError> {
        let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL;
        // SAFETY: loading a library runs its initializers. We only load files the
        // operator configured; kubernel plugins have no initializers beyond std's.
        let lib =
            unsafe { libloading::os::unix::Library::open(Some(copy), flags) }.map_err(|e| {
                LoadError::Open {
                    path: path.to_path_buf(),
                    message: e
                        .to_string()
                        .replace(&copy.display().to_string(), &path.display().to_string()),
                }
            })?;
        let lib: libloading::Library = lib.into();
        // SAFETY: we read the symbol's address only; it is dereferenced below after
        // checking the header, which every descriptor version starts with.
        let sym =
            unsafe { lib.get::<*const DescriptorHeader>(DESCRIPTOR_SYMBOL) }.map_err(|_| {
                LoadError::NoDescriptor {
                    path: path.to_path_buf(),
                }
            })?;
        let header_ptr: *const DescriptorHeader = *sym;
        // SAFETY: the symbol is a static in a library we keep loaded forever; the
        // header is the stable 16-byte prefix of every kubernel descriptor.
        let header = unsafe { header_ptr.read_unaligned() };
        if header.magic != MAGIC {
            return Err(LoadError::BadMagic {
                path: path.to_path_buf(),
                found: header.magic,
            });
        }
        let needed = PluginDescriptor::BASE_SIZE;
        if header.abi_version != ABI_VERSION {
            // Only the header is known to be laid out as ours; the SDK version field
            // is read only when the struct is at least as large as ours.
            let plugin_sdk = if header.size >= needed {
                // SAFETY: the size says the base descriptor of this layout is present.
                unsafe { PluginDescriptor::read_from(header_ptr) }
                    .abi_crate_version
                    .to_string_lossy()
            } else {
                "unknown".to_string()
            };
            return Err(LoadError::AbiMismatch {
                path: path.to_path_buf(),
                plugin_abi: header.abi_version,
                kernel_abi: ABI_VERSION,
                plugin_sdk,
                kernel_sdk: ABI_CRATE_VERSION.to_string(),
            });
        }
        if header.size < needed {
            return Err(LoadError::DescriptorTooSmall {
                path: path.to_path_buf(),
                found: header.size,
                needed,
            });
        }
        // SAFETY: magic, ABI version and size say this kernel's descriptor layout, at
        // least its base; the static lives as long as the library, never unloaded.
        let desc = unsafe { PluginDescriptor::read_from(header_ptr) };
        let sdk_version = desc.abi_crate_version.to_string_lossy();
        if major_minor(&sdk_version) != major_minor(ABI_CRATE_VERSION) {
            return Err(LoadError::AbiMismatch {
                path: path.to_path_buf(),
                plugin_abi: header.abi_version,
                kernel_abi: ABI_VERSION,
                plugin_sdk: sdk_version,
                kernel_sdk: ABI_CRATE_VERSION.to_string(),
            });
        }
        let target = desc.target.to_string_lossy();
        if target != BUILD_TARGET {
            return Err(LoadError::TargetMismatch {
                path: path.to_path_buf(),
                plugin: target,
                kernel: BUILD_TARGET.to_string(),
            });
        }
        let meta = PluginMeta {
            plugin: desc.name.to_string_lossy(),
            kind: desc.kind.to_string_lossy(),
            version: desc.version.to_string_lossy(),
            sdk_version,
            rustc: desc.rustc_version.to_string_lossy(),
            state_version: desc.state_version,
        };
        Ok(Library {
            _lib: ManuallyDrop::new(lib),
            desc,
            path: path.to_path_buf(),
            meta,
        })
    }
}

/// A failed entry-point call: its status and the plugin's message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}{message}", if *status == Status::ERROR { String::new() } else { format!("{}: ", status.name()) })]
pub struct CallError {
    /// Status returned.
    pub status: Status,
    /// The plugin's message.
    pub message: String,
}

impl CallError {
    fn from_parts(status: Status, buf: Vec<u8>) -> Self {
        CallError {
            status,
            message: String::from_utf8_lossy(&buf).into_owned(),
        }
    }
}

fn unit(status: Status, buf: Vec<u8>) -> Result<(), CallError> {
    if status.is_ok() {
        Ok(())
    } else {
        Err(CallError::from_parts(status, buf))
    }
}

/// A live plugin instance: the library it came from and its opaque handle.
///
/// Dropping a `Live` without `shutdown` leaks the instance, which is what a
/// poisoned (panicked) instance gets: its memory cannot be trusted.
pub struct Live {
    lib: std::sync::Arc<Library>,
    inst: RawInstance,
}

struct RawInstance(Instance);

// SAFETY: an instance is only ever used by the thread holding its slot's lock,
// and the ABI requires plugin types to be `Send` (see `kubernel_abi::Entry`).
unsafe impl Send for RawInstance {}

impl Live {
    /// Creates an instance of `lib` with host context `ctx` and JSON init parameters.
    pub fn init(
        lib: std::sync::Arc<Library>,
        vtable: &HostVtable,
        params: &[u8],
    ) -> Result<Live, CallError> {
        let mut inst: Instance = std::ptr::null_mut::<c_void>();
        let mut err = Vec::new();
        let status = (lib.desc.init)(
            vtable,
            Bytes::new(params),
            &mut inst,
            &mut OutBuf::new(&mut err),
        );
        unit(status, err)?;
        Ok(Live {
            lib,
            inst: RawInstance(inst),
        })
    }

    /// The library this instance came from.
    pub fn library(&self) -> &std::sync::Arc<Library> {
        &self.lib
    }

    /// Delivers one message; the reply or error message goes to `out`.
    /// The sender's trace context goes along when the plugin takes it (its SDK
    /// exports `handle_traced`).
    pub fn handle(&mut self, msg: Envelope<'_>, out: &mut OutBuf<'_>) -> Status {
        let (from, kind, payload) = (
            Bytes::from(msg.from),
            Bytes::from(msg.kind),
            Bytes::new(msg.payload),
        );
        match self.lib.desc.handle_traced {
            Some(handle) if !msg.trace.is_empty() => {
                handle(self.inst.0, from, kind, payload, Bytes::new(msg.trace), out)
            }
            _ => (self.lib.desc.handle)(self.inst.0, from, kind, payload, out),
        }
    }

    /// Asks the instance to stop taking work within `deadline`.
    pub fn quiesce(&mut self, deadline: Duration) -> Result<(), CallError> {
        let mut err = Vec::new();
        let ms = deadline.as_millis().min(u64::MAX as u128) as u64;
        let status = (self.lib.desc.quiesce)(self.inst.0, ms, &mut OutBuf::new(&mut err));
        unit(status, err)
    }

    /// Undoes `quiesce`.
    pub fn resume(&mut self) -> Result<(), CallError> {
        let mut err = Vec::new();
        let status = (self.lib.desc.resume)(self.inst.0, &mut OutBuf::new(&mut err));
        unit(status, err)
    }

    /// Takes a snapshot of the instance's state.
    pub fn snapshot(&mut self) -> Result<Vec<u8>, CallError> {
        let mut out = Vec::new();
        let status = (self.lib.desc.snapshot)(self.inst.0, &mut OutBuf::new(&mut out));
        if status.is_ok() {
            Ok(out)
        } else {
            Err(CallError::from_parts(status, out))
        }
    }

    /// Restores a snapshot written by a plugin of state version `from_version`.
    pub fn restore(&mut self, state: &[u8], from_version: u32) -> Result<(), CallError> {
        let mut err = Vec::new();
        let status = (self.lib.desc.restore)(
            self.inst.0,
            Bytes::new(state),
            from_version,
            &mut OutBuf::new(&mut err),
        );
        unit(status, err)
    }

    /// The instance's metrics as length-delimited protobuf families.
    pub fn metrics(&mut self) -> Result<Vec<u8>, CallError> {
        let mut out = Vec::new();
        let status = (self.lib.desc.metrics)(self.inst.0, &mut OutBuf::new(&mut out));
        if status.is_ok() {
            Ok(out)
        } else {
            Err(CallError::from_parts(status, out))
        }
    }

    /// Destroys the instance.
    pub fn shutdown(self) {
        (self.lib.desc.shutdown)(self.inst.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_should_name_the_file_when_it_is_not_a_plugin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = dir.path().join("plugin.so");
        std::fs::write(&text, "not a library").expect("write");
        let err = Library::load(&text, dir.path()).err().expect("refused");
        assert!(
            err.to_string().contains("not an ELF shared object"),
            "{err}"
        );
        let err = Library::load(&dir.path().join("missing.so"), dir.path())
            .err()
            .expect("refused");
        assert!(
            err.to_string().ends_with("missing.so: no such file"),
            "{err}"
        );
        let err = Library::load(dir.path(), dir.path())
            .err()
            .expect("refused");
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn major_minor_should_drop_the_patch() {
        assert_eq!(major_minor("0.1.7"), "0.1");
        assert_eq!(major_minor("1"), "1");
    }
}
