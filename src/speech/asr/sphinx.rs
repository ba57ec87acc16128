//! The embedded recogniser: Debian's pocketsphinx (0.8+5prealpha), loaded at run time.
//!
//! The crates that bind pocketsphinx target an older API than Debian ships, so the few C
//! functions used are declared here and looked up with `libloading` on first use: the switch
//! builds and runs where the library is absent, and speech then fails with a message naming
//! the packages. Each decoder loads the acoustic model, dictionary and language model (about
//! 35 MB) once and lives on its own thread; utterances queue for the next free decoder. A
//! decoder keeps the grammars it has compiled, by text, up to `MAX_GRAMMARS`.
//!
//! The model is trained on 16 kHz audio and does not start at 8 kHz: every utterance is
//! brought to the telephone band and folded to 16 kHz (`to_model_rate`).

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};

use futures_util::future::BoxFuture;
use tokio::sync::oneshot;

use super::{AsrError, Engine, Grammar, Recognition, Request, SPHINX_PACKAGES};
use crate::config::AsrConfig;
use crate::media::{resample_all, TELEPHONE_RATE};

/// Grammars a decoder keeps compiled; past it they are all dropped and compiled again.
const MAX_GRAMMARS: usize = 32;
/// The search pocketsphinx builds from `-lm` (dictation).
const DICTATION_SEARCH: &CStr = c"_default";

type PsArgs = unsafe extern "C" fn() -> *const c_void;
type CmdLnParseR =
    unsafe extern "C" fn(*mut c_void, *const c_void, i32, *const *const c_char, i32) -> *mut c_void;
type CmdLnFreeR = unsafe extern "C" fn(*mut c_void) -> c_int;
type PsInit = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
type PsFree = unsafe extern "C" fn(*mut c_void) -> c_int;
type PsSetJsgfString = unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char) -> c_int;
type PsSetSearch = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;
type PsUnsetSearch = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;
type PsStartUtt = unsafe extern "C" fn(*mut c_void) -> c_int;
type PsProcessRaw = unsafe extern "C" fn(*mut c_void, *const i16, usize, c_int, c_int) -> c_int;
type PsEndUtt = unsafe extern "C" fn(*mut c_void) -> c_int;
type PsGetHyp = unsafe extern "C" fn(*mut c_void, *mut i32) -> *const c_char;
type PsGetProb = unsafe extern "C" fn(*mut c_void) -> i32;
type PsGetLogmath = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
type LogmathExp = unsafe extern "C" fn(*mut c_void, c_int) -> f64;

/// The library and the functions looked up in it. The `Library` values keep the code mapped
/// for as long as the pointers are used.
struct Api {
    _base: libloading::Library,
    _ps: libloading::Library,
    ps_args: PsArgs,
    cmd_ln_parse_r: CmdLnParseR,
    cmd_ln_free_r: CmdLnFreeR,
    ps_init: PsInit,
    ps_free: PsFree,
    ps_set_jsgf_string: PsSetJsgfString,
    ps_set_search: PsSetSearch,
    ps_unset_search: PsUnsetSearch,
    ps_start_utt: PsStartUtt,
    ps_process_raw: PsProcessRaw,
    ps_end_utt: PsEndUtt,
    ps_get_hyp: PsGetHyp,
    ps_get_prob: PsGetProb,
    ps_get_logmath: PsGetLogmath,
    logmath_exp: LogmathExp,
}

impl Api {
    fn load() -> Result<Api, String> {
        let open = |name: &str| {
            // SAFETY: loading a shared library runs its initialisers; pocketsphinx's and
            // sphinxbase's have no side effects beyond their own state.
            unsafe { libloading::Library::new(name) }.map_err(|e| {
                format!("cannot load {name} ({e}); install the Debian packages {SPHINX_PACKAGES}")
            })
        };
        let base = open("libsphinxbase.so.3")?;
        let ps = open("libpocketsphinx.so.3")?;
        macro_rules! sym {
            ($lib:expr, $name:literal) => {
                // SAFETY: the type written at each use is the function's C signature in
                // pocketsphinx 5prealpha / sphinxbase 5prealpha.
                *unsafe { $lib.get(concat!($name, "\0").as_bytes()) }
                    .map_err(|e| format!("{} lacks {}: {e}", "pocketsphinx", $name))?
            };
        }
        Ok(Api {
            ps_args: sym!(ps, "ps_args"),
            cmd_ln_parse_r: sym!(base, "cmd_ln_parse_r"),
            cmd_ln_free_r: sym!(base, "cmd_ln_free_r"),
            ps_init: sym!(ps, "ps_init"),
            ps_free: sym!(ps, "ps_free"),
            ps_set_jsgf_string: sym!(ps, "ps_set_jsgf_string"),
            ps_set_search: sym!(ps, "ps_set_search"),
            ps_unset_search: sym!(ps, "ps_unset_search"),
            ps_start_utt: sym!(ps, "ps_start_utt"),
            ps_process_raw: sym!(ps, "ps_process_raw"),
            ps_end_utt: sym!(ps, "ps_end_utt"),
            ps_get_hyp: sym!(ps, "ps_get_hyp"),
            ps_get_prob: sym!(ps, "ps_get_prob"),
            ps_get_logmath: sym!(ps, "ps_get_logmath"),
            logmath_exp: sym!(base, "logmath_exp"),
            _base: base,
            _ps: ps,
        })
    }
}

/// The library, loaded once per process (or the reason it cannot be).
fn api() -> Result<&'static Api, String> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(Api::load).as_ref().map_err(Clone::clone)
}

/// One loaded decoder. Used by one thread at a time.
struct Decoder {
    api: &'static Api,
    ps: *mut c_void,
    config: *mut c_void,
    /// Compiled grammars: JSGF text → search name.
    grammars: HashMap<String, CString>,
    next_search: u32,
}

// SAFETY: a decoder is moved to its thread once and used only there.
unsafe impl Send for Decoder {}

impl Decoder {
    fn new(config: &AsrConfig) -> Result<Decoder, String> {
        let api = api()?;
        for (what, path) in [
            ("model", &config.model),
            ("dictionary", &config.dictionary),
            ("language_model", &config.language_model),
        ] {
            if !Path::new(path).exists() {
                return Err(format!(
                    "asr.{what} {} does not exist; install the Debian packages {SPHINX_PACKAGES}",
                    path.display()
                ));
            }
        }
        let args = [
            "-hmm".to_owned(),
            config.model.display().to_string(),
            "-dict".into(),
            config.dictionary.display().to_string(),
            "-lm".into(),
            config.language_model.display().to_string(),
            "-logfn".into(),
            "/dev/null".into(),
            // Telephone audio upsampled to 16 kHz has nothing above 4 kHz; dither keeps the
            // log spectrum finite there.
            "-dither".into(),
            "yes".into(),
            // Dither from a fixed seed: the same audio is recognised the same way every time.
            "-seed".into(),
            "1".into(),
            // Wider beams than the defaults (1e-48, 1e-48, 7e-29): measured through the whole
            // switch on 30 IVR phrases × 4 espeak-ng voices at 8 kHz, 1e-80 took 89 % exact and
            // these 90 %, at 0.03 s of decoder CPU per second of speech (BENCHMARKS.md,
            // "Speech recognition").
            "-beam".into(),
            "1e-100".into(),
            "-pbeam".into(),
            "1e-100".into(),
            "-wbeam".into(),
            "1e-80".into(),
        ];
        let owned: Vec<CString> = args
            .iter()
            .map(|a| CString::new(a.as_str()).map_err(|_| format!("bad path in {a}")))
            .collect::<Result<_, _>>()?;
        let argv: Vec<*const c_char> = owned.iter().map(|a| a.as_ptr()).collect();
        // SAFETY: argv holds argc valid C strings that outlive the call; ps_args() is the
        // decoder's static argument table.
        let cmd = unsafe {
            (api.cmd_ln_parse_r)(
                std::ptr::null_mut(),
                (api.ps_args)(),
                argv.len() as i32,
                argv.as_ptr(),
                1,
            )
        };
        if cmd.is_null() {
            return Err("pocketsphinx refused its arguments".into());
        }
        // SAFETY: cmd is a valid configuration; ps_init takes its own reference.
        let ps = unsafe { (api.ps_init)(cmd) };
        if ps.is_null() {
            // SAFETY: cmd came from cmd_ln_parse_r and is freed once.
            unsafe { (api.cmd_ln_free_r)(cmd) };
            return Err(format!(
                "pocketsphinx could not load the model under {}",
                config.model.display()
            ));
        }
        Ok(Decoder {
            api,
            ps,
            config: cmd,
            grammars: HashMap::new(),
            next_search: 0,
        })
    }

    /// Makes `grammar` the active search, compiling it on first use.
    fn select(&mut self, grammar: &Grammar) -> Result<(), AsrError> {
        let Some(jsgf) = grammar.to_jsgf() else {
            // SAFETY: ps is a live decoder; the name is a valid C string.
            let rc = unsafe { (self.api.ps_set_search)(self.ps, DICTATION_SEARCH.as_ptr()) };
            return if rc < 0 {
                Err(AsrError::Failed("the dictation model is not loaded".into()))
            } else {
                Ok(())
            };
        };
        if !self.grammars.contains_key(&jsgf) {
            if self.grammars.len() >= MAX_GRAMMARS {
                for name in self.grammars.values() {
                    // SAFETY: each name was set with ps_set_jsgf_string on this decoder.
                    unsafe { (self.api.ps_unset_search)(self.ps, name.as_ptr()) };
                }
                self.grammars.clear();
            }
            self.next_search += 1;
            let name = CString::new(format!("g{}", self.next_search))
                .map_err(|e| AsrError::Failed(e.to_string()))?;
            let text = CString::new(jsgf.as_str())
                .map_err(|_| AsrError::BadGrammar("it contains a NUL byte".into()))?;
            // SAFETY: ps is live; both strings are valid and copied by the callee.
            let rc =
                unsafe { (self.api.ps_set_jsgf_string)(self.ps, name.as_ptr(), text.as_ptr()) };
            if rc < 0 {
                return Err(AsrError::BadGrammar(
                    "pocketsphinx cannot compile it (a JSGF syntax error, or a word its \
                     dictionary does not know)"
                        .into(),
                ));
            }
            self.grammars.insert(jsgf.clone(), name);
        }
        let name = &self.grammars[&jsgf];
        // SAFETY: ps is live and the search exists.
        if unsafe { (self.api.ps_set_search)(self.ps, name.as_ptr()) } < 0 {
            return Err(AsrError::Failed("cannot select the grammar".into()));
        }
        Ok(())
    }

    fn hypothesis(&self) -> String {
        let mut score = 0i32;
        // SAFETY: ps is live; the returned string is owned by the decoder and copied here
        // before the next call into it.
        let hyp = unsafe { (self.api.ps_get_hyp)(self.ps, &mut score) };
        if hyp.is_null() {
            return String::new();
        }
        // SAFETY: a non-null hypothesis is a NUL-terminated string.
        unsafe { CStr::from_ptr(hyp) }
            .to_string_lossy()
            .trim()
            .to_owned()
    }

    fn decode(&mut self, job: &Job) -> Result<Recognition, AsrError> {
        self.select(&job.grammar)?;
        let audio = to_model_rate(&job.audio, job.rate)?;
        // SAFETY: ps is live; each chunk is a valid slice for the duration of the call.
        unsafe {
            if (self.api.ps_start_utt)(self.ps) < 0 {
                return Err(AsrError::Failed("cannot start an utterance".into()));
            }
            // Not as a whole utterance (`full_utt` 0): cepstral mean normalisation then
            // starts from the decoder's running estimate of the line, which on short IVR
            // phrases recognised 88 % exactly against 64 % when computed over each utterance
            // alone (BENCHMARKS.md, "Speech recognition").
            (self.api.ps_process_raw)(self.ps, audio.as_ptr(), audio.len(), 0, 0);
            (self.api.ps_end_utt)(self.ps);
        }
        let text = self.hypothesis();
        // SAFETY: ps is live; the log-math table belongs to it.
        let confidence = unsafe {
            let lmath = (self.api.ps_get_logmath)(self.ps);
            if lmath.is_null() || text.is_empty() {
                None
            } else {
                let p = (self.api.logmath_exp)(lmath, (self.api.ps_get_prob)(self.ps));
                (p.is_finite() && (0.0..=1.0).contains(&p)).then_some(p as f32)
            }
        };
        Ok(Recognition { text, confidence })
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: both were created in `new` and are freed once.
        unsafe {
            (self.api.ps_free)(self.ps);
            (self.api.cmd_ln_free_r)(self.config);
        }
    }
}

/// Audio at the model's rate, from the telephone band. A clean resampler leaves 4–8 kHz
/// empty when it brings 8 kHz audio to 16 kHz, and the wideband model then hears nothing it
/// knows there (on espeak-ng phrases the grammar matched nothing). Zero-stuffing 8 kHz audio
/// without the usual low-pass instead mirrors the telephone band into the upper band
/// (spectral folding, a classic cheap bandwidth extension). Measured on 30 IVR phrases × 4
/// voices, decoded alone: 92 % exact, against 99 % for native wideband speech and 83 % for
/// sample-and-hold.
/// Callers at other rates are brought to 8 kHz first: a 16 kHz leg often carries telephone
/// audio upsampled on the way (that too matched nothing), and one path for every caller keeps
/// results the same whatever the protocol. The gain of 2 keeps the level of the base band.
fn to_model_rate(audio: &[i16], rate: u32) -> Result<Vec<i16>, AsrError> {
    let narrow = if rate == TELEPHONE_RATE {
        std::borrow::Cow::Borrowed(audio)
    } else {
        std::borrow::Cow::Owned(
            resample_all(audio, rate, TELEPHONE_RATE)
                .map_err(|e| AsrError::Failed(e.to_string()))?,
        )
    };
    Ok(narrow
        .iter()
        .flat_map(|s| [s.saturating_mul(2), 0])
        .collect())
}

struct Job {
    audio: Vec<i16>,
    rate: u32,
    grammar: Arc<Grammar>,
    reply: oneshot::Sender<Result<Recognition, AsrError>>,
}

/// A bounded queue of utterances in front of `decoders` decoder threads, started on first
/// use.
pub struct SphinxPool {
    config: AsrConfig,
    jobs: OnceLock<Result<SyncSender<Job>, String>>,
}

impl SphinxPool {
    pub fn new(config: &AsrConfig) -> SphinxPool {
        SphinxPool {
            config: config.clone(),
            jobs: OnceLock::new(),
        }
    }

    /// Loads the library and the first decoder (so a missing package is reported at once),
    /// then starts the threads.
    fn start(config: &AsrConfig) -> Result<SyncSender<Job>, String> {
        let first = Decoder::new(config)?;
        let (tx, rx) = sync_channel::<Job>(config.queue);
        let rx = Arc::new(Mutex::new(rx));
        let count = config.decoder_count();
        tracing::info!(decoders = count, "speech recognition: pocketsphinx loaded");
        let mut first = Some(first);
        for i in 0..count {
            let rx = rx.clone();
            let config = config.clone();
            let ready = first.take();
            let spawned = std::thread::Builder::new()
                .name(format!("asr-{i}"))
                .spawn(move || {
                    let decoder = match ready {
                        Some(d) => Ok(d),
                        None => Decoder::new(&config),
                    };
                    serve(decoder, &rx);
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a speech decoder thread");
            }
        }
        Ok(tx)
    }
}

/// A decoder thread: takes the next utterance until the pool is dropped.
fn serve(decoder: Result<Decoder, String>, jobs: &Mutex<Receiver<Job>>) {
    let mut decoder = match decoder {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "a speech decoder could not load");
            return;
        }
    };
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        if job.reply.is_closed() {
            continue;
        }
        let result = decoder.decode(&job);
        let _ = job.reply.send(result);
    }
}

impl Engine for SphinxPool {
    fn ready(&self) -> Result<(), AsrError> {
        self.jobs
            .get_or_init(|| SphinxPool::start(&self.config))
            .as_ref()
            .map(|_| ())
            .map_err(|e| AsrError::Unavailable(e.clone()))
    }

    fn recognize(&self, request: Request) -> BoxFuture<'static, Result<Recognition, AsrError>> {
        let jobs = self
            .jobs
            .get_or_init(|| SphinxPool::start(&self.config))
            .clone();
        let queue = self.config.queue;
        Box::pin(async move {
            let jobs = jobs.map_err(AsrError::Unavailable)?;
            let (reply, answer) = oneshot::channel();
            let job = Job {
                audio: request.audio,
                rate: request.rate,
                grammar: request.grammar,
                reply,
            };
            match jobs.try_send(job) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => return Err(AsrError::Busy(queue)),
                Err(TrySendError::Disconnected(_)) => {
                    return Err(AsrError::Unavailable("no speech decoder is running".into()))
                }
            }
            answer
                .await
                .unwrap_or_else(|_| Err(AsrError::Failed("the speech decoder stopped".into())))
        })
    }
}
