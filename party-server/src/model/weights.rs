//! safetensors I/O for f32 weights.

use std::collections::HashMap;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::cpu::CpuTensor;
use super::{ModelError, Result};

/// Parse safetensors bytes into named f32 tensors (F32 only).
pub fn parse_safetensors(bytes: &[u8]) -> Result<HashMap<String, CpuTensor>> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| ModelError::Weights(e.to_string()))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(ModelError::Weights(format!(
                "{name}: dtype {:?}, only F32 is supported",
                view.dtype()
            )));
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        out.insert(name.to_string(), CpuTensor::new(data, view.shape())?);
    }
    Ok(out)
}

/// Load a safetensors file into named f32 tensors.
pub fn load_safetensors(path: impl AsRef<std::path::Path>) -> Result<HashMap<String, CpuTensor>> {
    let p = path.as_ref();
    let bytes = std::fs::read(p).map_err(|e| ModelError::Io(format!("{}: {e}", p.display())))?;
    parse_safetensors(&bytes)
}

/// Serialise named f32 tensors to safetensors bytes (names sorted, deterministic).
pub fn to_safetensors_bytes(tensors: &HashMap<String, CpuTensor>) -> Result<Vec<u8>> {
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let bufs: Vec<(String, Vec<u8>, Vec<usize>)> = names
        .iter()
        .map(|n| {
            let t = &tensors[*n];
            let b: Vec<u8> = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            ((*n).clone(), b, t.shape.clone())
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = bufs
        .iter()
        .map(|(n, b, s)| {
            TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| ModelError::Weights(e.to_string()))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize(views, None).map_err(|e| ModelError::Weights(e.to_string()))
}

/// Write named f32 tensors to a safetensors file.
pub fn save_safetensors(
    tensors: &HashMap<String, CpuTensor>,
    path: impl AsRef<std::path::Path>,
) -> Result<()> {
    let p = path.as_ref();
    let bytes = to_safetensors_bytes(tensors)?;
    std::fs::write(p, bytes).map_err(|e| ModelError::Io(format!("{}: {e}", p.display())))
}
