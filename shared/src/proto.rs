//! The client API of the party servers: versioned messages exchanged over one
//! WebSocket connection per server, each message one binary frame.
//!
//! ```text
//! 0      3        4       5          8               12            12+h
//! "CDM" version  kind   0 0 0     header len h     JSON header    payload: u64 LE words
//! ```
//!
//! The header is JSON (serde, unknown fields refused) so that the message
//! types can grow without a hand-written codec; share data travels as the
//! binary payload, never as JSON numbers.  Both ends decode with the same
//! functions, which check every length against the header before allocating,
//! so a server can answer a malformed frame with a precise error instead of
//! panicking or allocating what a hostile client asks for.

use crate::party::Party;
use crate::prg::Seed;
use crate::share::{Component, PartyBundle, PartyShares};
use serde::{Deserialize, Serialize};

/// Version of this wire format; a server refuses frames of any other.
pub const VERSION: u8 = 1;
const MAGIC: &[u8; 3] = b"CDM";
const PREAMBLE: usize = 12;
/// Largest frame either side accepts: bounds a server's memory per connection.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;
/// Largest JSON header: headers carry names and small numbers only.
pub const MAX_HEADER_BYTES: usize = 64 << 10;
/// Longest request id and model name.
pub const MAX_NAME_LEN: usize = 64;

/// Why a frame was refused.  The text is sent back to the client verbatim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("frame of {0} bytes is shorter than the 12-byte preamble")]
    TooShort(usize),
    #[error("frame does not start with the \"CDM\" magic")]
    BadMagic,
    #[error("unsupported protocol version {got} (this side speaks {VERSION})")]
    Version { got: u8 },
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    #[error("message kind {0} is not sent in this direction")]
    WrongDirection(u8),
    #[error("reserved preamble bytes must be zero")]
    Reserved,
    #[error("frame of {got} bytes exceeds the limit of {max}")]
    TooLarge { got: usize, max: usize },
    #[error(
        "header length {declared} does not fit the frame ({available} bytes after the preamble, limit {MAX_HEADER_BYTES})"
    )]
    HeaderLength { declared: usize, available: usize },
    #[error("invalid header: {0}")]
    Header(String),
    #[error("payload of {0} bytes is not a whole number of 64-bit words")]
    PayloadAlignment(usize),
    #[error("payload has {got} words, the header declares {expected}")]
    PayloadLength { expected: u64, got: u64 },
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// Which sampler a request runs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SamplerName {
    Ddim,
    Ddpm,
}

/// Which protocol set the servers run for the non-linear layers.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum VariantName {
    Baseline,
    Cipherdm,
}

/// Everything about a generation that the servers may know.  The client sends
/// the same request to all three; they compare digests of it before they
/// compute, so no server can be steered into a different computation than
/// the other two.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PublicRequest {
    /// Chosen by the client, unique per generation (8–64 of `[A-Za-z0-9_-]`):
    /// it names the session on the servers' links.
    pub request_id: String,
    pub model: String,
    pub sampler: SamplerName,
    /// DDIM steps (DDPM runs the model's whole schedule and ignores this).
    pub steps: u32,
    /// The model's activation, as the client believes it to be.
    pub activation: String,
    pub variant: VariantName,
    /// Images per request.
    pub batch: u32,
    /// Fixed-point fraction bits the client encoded its inputs with.
    pub frac_bits: u32,
    /// Whether the client wants shares of x_t after every step.
    pub preview: bool,
}

fn name_ok(s: &str, min: usize, extra: &[char]) -> bool {
    (min..=MAX_NAME_LEN).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || extra.contains(&c))
}

impl PublicRequest {
    /// Whether `s` is a valid model name (also a file name on the servers).
    pub fn model_name_ok(s: &str) -> bool {
        name_ok(s, 1, &['.']) && !s.starts_with('.')
    }

    /// Syntax checks that need no model: names, and numbers in range.
    pub fn validate(&self) -> Result<(), ProtoError> {
        let bad = |m: String| Err(ProtoError::Invalid(m));
        if !name_ok(&self.request_id, 8, &[]) {
            return bad("request_id must be 8 to 64 characters of [A-Za-z0-9_-]".into());
        }
        if !Self::model_name_ok(&self.model) {
            return bad("model must be 1 to 64 characters of [A-Za-z0-9_.-]".into());
        }
        if !name_ok(&self.activation, 1, &[]) {
            return bad("activation must be a short name".into());
        }
        if self.sampler == SamplerName::Ddim && !(1..=1000).contains(&self.steps) {
            return bad(format!("DDIM steps must be 1..=1000, got {}", self.steps));
        }
        if !(1..=64).contains(&self.batch) {
            return bad(format!("batch must be 1..=64, got {}", self.batch));
        }
        if !(1..=40).contains(&self.frac_bits) {
            return bad(format!("frac_bits must be 1..=40, got {}", self.frac_bits));
        }
        Ok(())
    }

    /// Canonical bytes of the request (fields in declaration order), which
    /// the servers hash and compare.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a plain struct serialises")
    }
}

/// The private inputs of a generation, as one server receives them: for each
/// input vector, that server's two replicated components, seed-compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    /// x_T, standard-normal noise, `batch·C·H·W` fixed-point values.
    pub x_t: PartyBundle,
    /// One-hot class vectors, `batch·classes` (class-conditional models only).
    pub class: Option<PartyBundle>,
    /// DDPM's per-step noise, `(T−1)·batch·C·H·W` (DDPM only).
    pub noise: Option<PartyBundle>,
}

/// A request to generate: the public part and this server's input shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generate {
    pub request: PublicRequest,
    pub inputs: Inputs,
}

/// Client → server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMsg {
    /// Asks for the models this server holds.
    ListModels,
    /// Starts a generation; one per connection.
    Generate(Box<Generate>),
    /// Stops the running generation (the servers abort together).
    Cancel,
}

/// What a server tells a client about a model it holds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    pub name: String,
    pub activation: String,
    pub in_channels: u32,
    pub image_size: u32,
    /// 0 for an unconditional model.
    pub num_classes: u32,
    /// Dataset labels of the model's classes (index = class input).
    pub class_labels: Vec<u32>,
    /// What each class shows, for people ("7", "Sneaker"), same order
    /// (from servers older than this field: the labels, filled in on decoding).
    #[serde(default)]
    pub class_names: Vec<String>,
    pub frac_bits: u32,
    /// Diffusion steps T of the schedule.
    pub schedule_steps: u32,
}

/// Machine-readable reason of an [`ServerMsg::Error`].
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame could not be decoded.
    Malformed,
    /// The message is valid but not allowed in the connection's state.
    Unexpected,
    UnknownModel,
    /// The request or inputs do not fit the model.
    InvalidRequest,
    /// Too many sessions are running; retry later.
    Busy,
    /// The three servers did not receive the same public request.
    Mismatch,
    /// A peer server is not connected.
    PeerUnavailable,
    /// The computation stopped: a peer failed, timed out, or cancelled.
    Aborted,
    Cancelled,
}

impl ErrorCode {
    /// What the code means to a person using a client, in a few words.
    pub fn explain(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "could not decode the client's message",
            ErrorCode::Unexpected => "received a message out of order",
            ErrorCode::UnknownModel => "does not hold this model",
            ErrorCode::InvalidRequest => "refused the request as invalid for the model",
            ErrorCode::Busy => "is busy with other generations; try again in a moment",
            ErrorCode::Mismatch => "the three servers did not receive the same request",
            ErrorCode::PeerUnavailable => "cannot reach the other servers",
            ErrorCode::Aborted => {
                "the computation stopped (a server failed, timed out or went away)"
            }
            ErrorCode::Cancelled => "the generation was cancelled",
        }
    }
}

/// Shares of a tensor from one server: its two replicated components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorShares {
    /// Public shape, `[batch, C, H, W]`.
    pub shape: Vec<u32>,
    pub shares: PartyShares,
}

/// Server → client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMsg {
    Models(Vec<ModelInfo>),
    /// The three servers agreed on the request and started computing.
    Accepted {
        party: Party,
    },
    /// `step` of `total` denoising steps are done.
    Progress {
        step: u32,
        total: u32,
    },
    /// Shares of x_t entering step `step` (only with `preview`).
    Preview {
        step: u32,
        tensor: TensorShares,
    },
    /// Shares of the generated images; the last message of a generation.
    Result(TensorShares),
    Error {
        code: ErrorCode,
        message: String,
    },
}

mod kind {
    pub const LIST_MODELS: u8 = 1;
    pub const GENERATE: u8 = 2;
    pub const CANCEL: u8 = 3;
    pub const MODELS: u8 = 16;
    pub const ACCEPTED: u8 = 17;
    pub const PROGRESS: u8 = 18;
    pub const PREVIEW: u8 = 19;
    pub const RESULT: u8 = 20;
    pub const ERROR: u8 = 21;
}

/// How a component travels: a 16-byte seed (2 words) or `len` explicit words.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum ComponentForm {
    Seed,
    Explicit,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
enum InputName {
    XT,
    Class,
    Noise,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputHeader {
    name: InputName,
    len: u64,
    own: ComponentForm,
    next: ComponentForm,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerateHeader {
    request: PublicRequest,
    party: Party,
    inputs: Vec<InputHeader>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelsHeader {
    models: Vec<ModelInfo>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AcceptedHeader {
    party: Party,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProgressHeader {
    step: u32,
    total: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SharesHeader {
    /// Preview step; absent for the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    step: Option<u32>,
    party: Party,
    shape: Vec<u32>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorHeader {
    code: ErrorCode,
    message: String,
}

fn frame<H: Serialize>(kind: u8, header: &H, payload: &[u64]) -> Vec<u8> {
    let h = serde_json::to_vec(header).expect("headers serialise");
    let mut out = Vec::with_capacity(PREAMBLE + h.len() + 8 * payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[VERSION, kind, 0, 0, 0]);
    out.extend_from_slice(&(h.len() as u32).to_le_bytes());
    out.extend_from_slice(&h);
    for w in payload {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out
}

/// A checked view of a frame: kind, header bytes, payload bytes.
struct Frame<'a> {
    kind: u8,
    header: &'a [u8],
    payload: &'a [u8],
}

fn split(bytes: &[u8]) -> Result<Frame<'_>, ProtoError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(ProtoError::TooLarge {
            got: bytes.len(),
            max: MAX_MESSAGE_BYTES,
        });
    }
    if bytes.len() < PREAMBLE {
        return Err(ProtoError::TooShort(bytes.len()));
    }
    if &bytes[..3] != MAGIC {
        return Err(ProtoError::BadMagic);
    }
    if bytes[3] != VERSION {
        return Err(ProtoError::Version { got: bytes[3] });
    }
    if bytes[5..8] != [0, 0, 0] {
        return Err(ProtoError::Reserved);
    }
    let declared = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
    let available = bytes.len() - PREAMBLE;
    if declared > available || declared > MAX_HEADER_BYTES {
        return Err(ProtoError::HeaderLength {
            declared,
            available,
        });
    }
    let payload = &bytes[PREAMBLE + declared..];
    if payload.len() % 8 != 0 {
        return Err(ProtoError::PayloadAlignment(payload.len()));
    }
    Ok(Frame {
        kind: bytes[4],
        header: &bytes[PREAMBLE..PREAMBLE + declared],
        payload,
    })
}

fn header<'a, H: Deserialize<'a>>(f: &Frame<'a>) -> Result<H, ProtoError> {
    serde_json::from_slice(f.header).map_err(|e| ProtoError::Header(e.to_string()))
}

fn words(payload: &[u8]) -> impl Iterator<Item = u64> + '_ {
    payload
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

fn payload_words(f: &Frame<'_>) -> u64 {
    (f.payload.len() / 8) as u64
}

fn expect_empty_payload(f: &Frame<'_>) -> Result<(), ProtoError> {
    if f.payload.is_empty() {
        Ok(())
    } else {
        Err(ProtoError::PayloadLength {
            expected: 0,
            got: payload_words(f),
        })
    }
}

fn seed_words(s: &Seed) -> [u64; 2] {
    [
        u64::from_le_bytes(s.0[..8].try_into().expect("8 bytes")),
        u64::from_le_bytes(s.0[8..].try_into().expect("8 bytes")),
    ]
}

fn component_form(c: &Component) -> ComponentForm {
    match c {
        Component::Seed(_) => ComponentForm::Seed,
        Component::Explicit(_) => ComponentForm::Explicit,
    }
}

fn push_component(out: &mut Vec<u64>, c: &Component) {
    match c {
        Component::Seed(s) => out.extend_from_slice(&seed_words(s)),
        Component::Explicit(v) => out.extend_from_slice(v),
    }
}

/// Largest input vector a request can carry (bounded again by the frame size).
const MAX_INPUT_LEN: u64 = (MAX_MESSAGE_BYTES / 8) as u64;

fn form_words(form: ComponentForm, len: u64) -> u64 {
    match form {
        ComponentForm::Seed => 2,
        ComponentForm::Explicit => len,
    }
}

fn take_component(it: &mut impl Iterator<Item = u64>, form: ComponentForm, len: u64) -> Component {
    match form {
        ComponentForm::Seed => {
            let mut s = [0u8; 16];
            s[..8].copy_from_slice(&it.next().expect("length checked").to_le_bytes());
            s[8..].copy_from_slice(&it.next().expect("length checked").to_le_bytes());
            Component::Seed(Seed(s))
        }
        ComponentForm::Explicit => Component::Explicit(it.by_ref().take(len as usize).collect()),
    }
}

/// Encodes a client message.
pub fn encode_client(msg: &ClientMsg) -> Vec<u8> {
    match msg {
        ClientMsg::ListModels => frame(kind::LIST_MODELS, &Empty {}, &[]),
        ClientMsg::Cancel => frame(kind::CANCEL, &Empty {}, &[]),
        ClientMsg::Generate(g) => {
            let mut inputs = vec![(InputName::XT, &g.inputs.x_t)];
            inputs.extend(g.inputs.class.as_ref().map(|b| (InputName::Class, b)));
            inputs.extend(g.inputs.noise.as_ref().map(|b| (InputName::Noise, b)));
            let mut payload = Vec::new();
            let headers = inputs
                .iter()
                .map(|(name, b)| {
                    push_component(&mut payload, &b.own);
                    push_component(&mut payload, &b.next);
                    InputHeader {
                        name: *name,
                        len: b.len as u64,
                        own: component_form(&b.own),
                        next: component_form(&b.next),
                    }
                })
                .collect();
            let h = GenerateHeader {
                request: g.request.clone(),
                party: g.inputs.x_t.party,
                inputs: headers,
            };
            frame(kind::GENERATE, &h, &payload)
        }
    }
}

/// Decodes a client message, checking the framing, the header's type and
/// every declared length against the payload.
pub fn decode_client(bytes: &[u8]) -> Result<ClientMsg, ProtoError> {
    let f = split(bytes)?;
    match f.kind {
        kind::LIST_MODELS | kind::CANCEL => {
            let Empty {} = header(&f)?;
            expect_empty_payload(&f)?;
            Ok(if f.kind == kind::CANCEL {
                ClientMsg::Cancel
            } else {
                ClientMsg::ListModels
            })
        }
        kind::GENERATE => decode_generate(&f),
        kind::MODELS..=kind::ERROR => Err(ProtoError::WrongDirection(f.kind)),
        k => Err(ProtoError::UnknownKind(k)),
    }
}

fn decode_generate(f: &Frame<'_>) -> Result<ClientMsg, ProtoError> {
    let h: GenerateHeader = header(f)?;
    h.request.validate()?;
    let mut names: Vec<InputName> = h.inputs.iter().map(|i| i.name).collect();
    names.sort();
    names.dedup();
    if names.len() != h.inputs.len() {
        return Err(ProtoError::Invalid("an input is listed twice".into()));
    }
    let mut expected: u64 = 0;
    for i in &h.inputs {
        if i.len == 0 || i.len > MAX_INPUT_LEN {
            return Err(ProtoError::Invalid(format!(
                "input {:?} has length {}, allowed 1..={MAX_INPUT_LEN}",
                i.name, i.len
            )));
        }
        expected += form_words(i.own, i.len) + form_words(i.next, i.len);
    }
    if expected != payload_words(f) {
        return Err(ProtoError::PayloadLength {
            expected,
            got: payload_words(f),
        });
    }
    let mut it = words(f.payload);
    let mut x_t = None;
    let mut class = None;
    let mut noise = None;
    for i in &h.inputs {
        let b = PartyBundle {
            party: h.party,
            len: i.len as usize,
            own: take_component(&mut it, i.own, i.len),
            next: take_component(&mut it, i.next, i.len),
        };
        match i.name {
            InputName::XT => x_t = Some(b),
            InputName::Class => class = Some(b),
            InputName::Noise => noise = Some(b),
        }
    }
    let x_t = x_t.ok_or_else(|| ProtoError::Invalid("the x_t input is missing".into()))?;
    Ok(ClientMsg::Generate(Box::new(Generate {
        request: h.request,
        inputs: Inputs { x_t, class, noise },
    })))
}

fn shares_frame(kind: u8, step: Option<u32>, t: &TensorShares) -> Vec<u8> {
    let h = SharesHeader {
        step,
        party: t.shares.party,
        shape: t.shape.clone(),
    };
    let mut payload = Vec::with_capacity(2 * t.shares.len());
    payload.extend_from_slice(&t.shares.own);
    payload.extend_from_slice(&t.shares.next);
    frame(kind, &h, &payload)
}

/// Encodes a server message.
pub fn encode_server(msg: &ServerMsg) -> Vec<u8> {
    match msg {
        ServerMsg::Models(m) => frame(kind::MODELS, &ModelsHeader { models: m.clone() }, &[]),
        ServerMsg::Accepted { party } => {
            frame(kind::ACCEPTED, &AcceptedHeader { party: *party }, &[])
        }
        ServerMsg::Progress { step, total } => frame(
            kind::PROGRESS,
            &ProgressHeader {
                step: *step,
                total: *total,
            },
            &[],
        ),
        ServerMsg::Preview { step, tensor } => shares_frame(kind::PREVIEW, Some(*step), tensor),
        ServerMsg::Result(t) => shares_frame(kind::RESULT, None, t),
        ServerMsg::Error { code, message } => frame(
            kind::ERROR,
            &ErrorHeader {
                code: *code,
                message: message.clone(),
            },
            &[],
        ),
    }
}

fn decode_shares(f: &Frame<'_>) -> Result<(Option<u32>, TensorShares), ProtoError> {
    let h: SharesHeader = header(f)?;
    let len = h
        .shape
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
        .filter(|&n| n <= MAX_INPUT_LEN)
        .ok_or_else(|| ProtoError::Invalid(format!("shape {:?} is too large", h.shape)))?;
    if payload_words(f) != 2 * len {
        return Err(ProtoError::PayloadLength {
            expected: 2 * len,
            got: payload_words(f),
        });
    }
    let all: Vec<u64> = words(f.payload).collect();
    let (own, next) = all.split_at(len as usize);
    Ok((
        h.step,
        TensorShares {
            shape: h.shape,
            shares: PartyShares {
                party: h.party,
                own: own.to_vec(),
                next: next.to_vec(),
            },
        },
    ))
}

/// Decodes a server message (the client's side), with the same checks.
pub fn decode_server(bytes: &[u8]) -> Result<ServerMsg, ProtoError> {
    let f = split(bytes)?;
    match f.kind {
        kind::MODELS => {
            let h: ModelsHeader = header(&f)?;
            expect_empty_payload(&f)?;
            let mut models = h.models;
            for m in &mut models {
                let k = m.num_classes as usize;
                if m.class_labels.len() != k
                    || !(m.class_names.is_empty() || m.class_names.len() == k)
                {
                    return Err(ProtoError::Header(format!(
                        "model {}: {k} classes but {} labels and {} names",
                        m.name,
                        m.class_labels.len(),
                        m.class_names.len()
                    )));
                }
                if m.class_names.is_empty() {
                    m.class_names = m.class_labels.iter().map(u32::to_string).collect();
                }
            }
            Ok(ServerMsg::Models(models))
        }
        kind::ACCEPTED => {
            let h: AcceptedHeader = header(&f)?;
            expect_empty_payload(&f)?;
            Ok(ServerMsg::Accepted { party: h.party })
        }
        kind::PROGRESS => {
            let h: ProgressHeader = header(&f)?;
            expect_empty_payload(&f)?;
            Ok(ServerMsg::Progress {
                step: h.step,
                total: h.total,
            })
        }
        kind::PREVIEW => match decode_shares(&f)? {
            (Some(step), tensor) => Ok(ServerMsg::Preview { step, tensor }),
            (None, _) => Err(ProtoError::Header("a preview needs a step".into())),
        },
        kind::RESULT => match decode_shares(&f)? {
            (None, t) => Ok(ServerMsg::Result(t)),
            (Some(_), _) => Err(ProtoError::Header("a result has no step".into())),
        },
        kind::ERROR => {
            let h: ErrorHeader = header(&f)?;
            expect_empty_payload(&f)?;
            Ok(ServerMsg::Error {
                code: h.code,
                message: h.message,
            })
        }
        kind::LIST_MODELS..=kind::CANCEL => Err(ProtoError::WrongDirection(f.kind)),
        k => Err(ProtoError::UnknownKind(k)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::share::share_seeded;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn request() -> PublicRequest {
        PublicRequest {
            request_id: "req-0001".into(),
            model: "cipherdm-tiny-silu".into(),
            sampler: SamplerName::Ddim,
            steps: 2,
            activation: "silu".into(),
            variant: VariantName::Cipherdm,
            batch: 1,
            frac_bits: 18,
            preview: false,
        }
    }

    fn generate(party: usize) -> ClientMsg {
        let mut rng = StdRng::seed_from_u64(9);
        let x = share_seeded(&[1, 2, 3, 4], &mut rng);
        let c = share_seeded(&[0, 1], &mut rng);
        ClientMsg::Generate(Box::new(Generate {
            request: request(),
            inputs: Inputs {
                x_t: x[party].clone(),
                class: Some(c[party].clone()),
                noise: None,
            },
        }))
    }

    #[test]
    fn client_messages_round_trip() {
        for m in [
            ClientMsg::ListModels,
            ClientMsg::Cancel,
            generate(0),
            generate(1),
            generate(2),
        ] {
            assert_eq!(decode_client(&encode_client(&m)), Ok(m));
        }
    }

    #[test]
    fn server_messages_round_trip() {
        let t = TensorShares {
            shape: vec![1, 1, 2, 2],
            shares: PartyShares {
                party: Party::ALL[1],
                own: vec![1, 2, 3, 4],
                next: vec![5, 6, 7, u64::MAX],
            },
        };
        for m in [
            ServerMsg::Models(vec![ModelInfo {
                name: "m".into(),
                activation: "silu".into(),
                in_channels: 1,
                image_size: 28,
                num_classes: 2,
                class_labels: vec![0, 1],
                class_names: vec!["0".into(), "1".into()],
                frac_bits: 18,
                schedule_steps: 1000,
            }]),
            ServerMsg::Accepted {
                party: Party::ALL[2],
            },
            ServerMsg::Progress { step: 3, total: 50 },
            ServerMsg::Preview {
                step: 4,
                tensor: t.clone(),
            },
            ServerMsg::Result(t),
            ServerMsg::Error {
                code: ErrorCode::Busy,
                message: "later".into(),
            },
        ] {
            assert_eq!(decode_server(&encode_server(&m)), Ok(m));
        }
    }

    #[test]
    fn model_lists_whose_class_counts_disagree_are_refused() {
        let info = |labels: Vec<u32>, names: Vec<&str>| ModelInfo {
            name: "m".into(),
            activation: "silu".into(),
            in_channels: 1,
            image_size: 28,
            num_classes: 2,
            class_labels: labels,
            class_names: names.into_iter().map(String::from).collect(),
            frac_bits: 14,
            schedule_steps: 1000,
        };
        let decode = |m: ModelInfo| decode_server(&encode_server(&ServerMsg::Models(vec![m])));
        match decode(info(vec![0, 1], vec![])) {
            Ok(ServerMsg::Models(m)) => assert_eq!(m[0].class_names, ["0", "1"], "labels stand in"),
            other => panic!("names are optional, got {other:?}"),
        }
        assert!(decode(info(vec![0, 1], vec!["a", "b"])).is_ok());
        assert!(matches!(
            decode(info(vec![0], vec![])),
            Err(ProtoError::Header(_))
        ));
        assert!(matches!(
            decode(info(vec![0, 1], vec!["a"])),
            Err(ProtoError::Header(_))
        ));
    }

    #[test]
    fn truncated_and_padded_frames_are_refused() {
        let bytes = encode_client(&generate(1));
        assert_eq!(decode_client(&bytes[..5]), Err(ProtoError::TooShort(5)));
        assert!(matches!(
            decode_client(&bytes[..bytes.len() - 8]),
            Err(ProtoError::PayloadLength { .. })
        ));
        assert!(matches!(
            decode_client(&bytes[..bytes.len() - 3]),
            Err(ProtoError::PayloadAlignment(_))
        ));
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0; 8]);
        assert!(matches!(
            decode_client(&longer),
            Err(ProtoError::PayloadLength { .. })
        ));
        let mut v = bytes.clone();
        v[3] = 9;
        assert_eq!(decode_client(&v), Err(ProtoError::Version { got: 9 }));
        let mut h = bytes;
        h[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_client(&h),
            Err(ProtoError::HeaderLength { .. })
        ));
    }

    #[test]
    fn wrong_direction_unknown_kind_and_bad_headers_are_refused() {
        let result = encode_server(&ServerMsg::Progress { step: 1, total: 2 });
        assert_eq!(
            decode_client(&result),
            Err(ProtoError::WrongDirection(kind::PROGRESS))
        );
        assert_eq!(
            decode_server(&encode_client(&ClientMsg::Cancel)),
            Err(ProtoError::WrongDirection(kind::CANCEL))
        );
        assert_eq!(
            decode_client(&frame(99, &Empty {}, &[])),
            Err(ProtoError::UnknownKind(99))
        );
        #[derive(Serialize)]
        struct Extra {
            surprise: u8,
        }
        assert!(matches!(
            decode_client(&frame(kind::LIST_MODELS, &Extra { surprise: 1 }, &[])),
            Err(ProtoError::Header(_))
        ));
        assert!(matches!(
            decode_client(&frame(kind::CANCEL, &Empty {}, &[7])),
            Err(ProtoError::PayloadLength { .. })
        ));
    }

    #[test]
    fn invalid_requests_are_refused_with_the_reason() {
        let mut bad = request();
        bad.request_id = "x".into();
        assert!(matches!(bad.validate(), Err(ProtoError::Invalid(m)) if m.contains("request_id")));
        let mut bad = request();
        bad.steps = 0;
        assert!(matches!(bad.validate(), Err(ProtoError::Invalid(m)) if m.contains("steps")));
        let mut bad = request();
        bad.model = "../etc/passwd".into();
        assert!(bad.validate().is_err());
        assert!(request().validate().is_ok());
    }

    #[test]
    fn oversized_frames_are_refused_before_parsing() {
        let big = vec![0u8; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(
            decode_client(&big),
            Err(ProtoError::TooLarge { .. })
        ));
    }

    #[test]
    fn canonical_bytes_differ_when_any_field_differs() {
        let a = request();
        let mut b = request();
        b.steps += 1;
        assert_ne!(a.canonical_bytes(), b.canonical_bytes());
        assert_eq!(a.canonical_bytes(), request().canonical_bytes());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        /// Arbitrary bytes never panic the decoder.
        #[test]
        fn decoder_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_client(&bytes);
            let _ = decode_server(&bytes);
        }

        /// A valid preamble with an arbitrary header and payload: the JSON and
        /// length checks are reached, and never panic.
        #[test]
        fn arbitrary_headers_never_panic(kind in 0u8..32, header in "[ -~]{0,200}", payload in proptest::collection::vec(any::<u64>(), 0..16)) {
            let mut bytes = Vec::new();
            bytes.extend_from_slice(MAGIC);
            bytes.extend_from_slice(&[VERSION, kind, 0, 0, 0]);
            bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
            bytes.extend_from_slice(header.as_bytes());
            for w in payload {
                bytes.extend_from_slice(&w.to_le_bytes());
            }
            let _ = decode_client(&bytes);
            let _ = decode_server(&bytes);
        }

        /// Valid frames with arbitrary corruption: still no panic, and
        /// anything accepted re-encodes to a valid message.
        #[test]
        fn corrupted_frames_never_panic(party in 0usize..3, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
            let mut bytes = encode_client(&generate(party));
            for (i, b) in flips {
                let n = bytes.len();
                bytes[i % n] ^= b;
            }
            bytes.truncate(cut % (bytes.len() + 1));
            if let Ok(m) = decode_client(&bytes) {
                prop_assert_eq!(decode_client(&encode_client(&m)), Ok(m));
            }
        }
    }
}
