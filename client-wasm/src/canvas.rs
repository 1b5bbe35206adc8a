//! Drawing reconstructed images.  The canvas gets exactly the image's
//! pixels (one canvas pixel per image pixel); the page scales it up with
//! CSS `image-rendering: pixelated`, so it stays crisp and what the canvas
//! holds is exactly what was reconstructed (the end-to-end test reads it).

use wasm_bindgen::{Clamped, JsCast, prelude::*};
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement, ImageData};

/// JS: `draw(canvas, width, height, rgba)`: resizes `canvas` to the image
/// and puts the RGBA pixels (as in a "preview" or "done" event) on it.
#[wasm_bindgen]
pub fn draw(
    canvas: &HtmlCanvasElement,
    width: u32,
    height: u32,
    rgba: &[u8],
) -> Result<(), JsError> {
    if width == 0 || height == 0 || rgba.len() != 4 * width as usize * height as usize {
        return Err(JsError::new(&format!(
            "{} bytes are not a {width}x{height} RGBA image",
            rgba.len()
        )));
    }
    canvas.set_width(width);
    canvas.set_height(height);
    let ctx: CanvasRenderingContext2d = canvas
        .get_context("2d")
        .map_err(|_| JsError::new("cannot get a 2d context"))?
        .ok_or_else(|| JsError::new("the canvas has no 2d context"))?
        .dyn_into()
        .map_err(|_| JsError::new("the 2d context has an unexpected type"))?;
    let data = ImageData::new_with_u8_clamped_array_and_sh(Clamped(rgba), width, height)
        .map_err(|_| JsError::new("cannot create the image data"))?;
    ctx.put_image_data(&data, 0.0, 0.0)
        .map_err(|_| JsError::new("cannot draw the image"))
}
