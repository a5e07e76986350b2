//! Images in the UI: attaching them to a post or message (a file picker, pasting, dropping
//! files on the form; each upload with a progress bar and a description field) and showing
//! them (lazy thumbnails with their size set, so nothing shifts as they load, and a
//! full-size view).
//!
//! Uploads go straight to the JSON API (`POST /v1/media`, cookie and CSRF token) from the
//! browser: a server function would carry the file through the page's own request, with no
//! progress to show.

use crate::model::Media;
use leptos::prelude::*;

/// One image being attached: uploading, uploaded, or refused.
#[derive(Clone, Debug, PartialEq)]
pub struct Attachment {
    /// Tells attachments apart before they have an id.
    key: u64,
    /// The file's name, while it uploads.
    name: String,
    /// Share of the file sent, 0.0..=1.0.
    progress: f64,
    /// The upload once stored.
    media: Option<Media>,
    /// Why the upload was refused.
    error: Option<String>,
    /// The description typed for it.
    alt: String,
}

/// The images attached to one form. `Copy`: a handle to a signal.
#[derive(Clone, Copy)]
pub struct Attachments {
    list: RwSignal<Vec<Attachment>>,
    /// Files are added in the browser only.
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    next_key: StoredValue<u64>,
}

impl Default for Attachments {
    fn default() -> Self {
        Self::new()
    }
}

impl Attachments {
    pub fn new() -> Self {
        Self {
            list: RwSignal::new(Vec::new()),
            next_key: StoredValue::new(0),
        }
    }

    /// Whether no image is attached (tracked).
    pub fn is_empty(&self) -> bool {
        self.list.with(|l| l.iter().all(|a| a.error.is_some()))
    }

    /// Whether an upload is still on its way (tracked).
    pub fn uploading(&self) -> bool {
        self.list
            .with(|l| l.iter().any(|a| a.media.is_none() && a.error.is_none()))
    }

    /// Whether one more image may be added (tracked).
    fn has_room(&self) -> bool {
        self.list.with(|l| l.len()) < crate::model::rules::MAX_ATTACHED_MEDIA
    }

    pub fn clear(&self) {
        self.list.set(Vec::new());
    }

    /// The uploaded images with the descriptions typed for them saved, in order; the
    /// first refusal's message otherwise.
    pub async fn finish(&self) -> Result<Vec<Media>, String> {
        finish(self.list.get_untracked()).await
    }

    /// Empties the form's images, handing them over (a message that takes them along
    /// cannot be sent twice by a second Enter).
    pub fn take(&self) -> Vec<Attachment> {
        self.list.try_update(std::mem::take).unwrap_or_default()
    }

    /// Puts images taken by [`take`](Self::take) back (their message was not sent).
    pub fn restore(&self, taken: Vec<Attachment>) {
        self.list.update(|l| {
            let added = std::mem::replace(l, taken);
            l.extend(added);
        });
    }

    /// Starts uploading the image files among `files`, as many as there is room for.
    #[cfg(feature = "hydrate")]
    pub fn add_files(&self, files: Option<web_sys::FileList>) {
        let Some(files) = files else { return };
        for i in 0..files.length() {
            let Some(file) = files.get(i) else { continue };
            if !file.type_().starts_with("image/") || !self.has_room() {
                continue;
            }
            let key = self.next_key.get_value();
            self.next_key.set_value(key + 1);
            self.list.update(|l| {
                l.push(Attachment {
                    key,
                    name: file.name(),
                    progress: 0.0,
                    media: None,
                    error: None,
                    alt: String::new(),
                })
            });
            let list = self.list;
            let set = move |change: &dyn Fn(&mut Attachment)| {
                list.update(|l| {
                    if let Some(a) = l.iter_mut().find(|a| a.key == key) {
                        change(a);
                    }
                })
            };
            leptos::task::spawn_local(async move {
                let progress = move |share: f64| set(&|a| a.progress = share);
                match upload(file, progress).await {
                    Ok(media) => set(&|a| a.media = Some(media.clone())),
                    Err(message) => set(&|a| a.error = Some(message.clone())),
                }
            });
        }
    }

    fn remove(&self, key: u64) {
        self.list.update(|l| l.retain(|a| a.key != key));
    }

    fn set_alt(&self, key: u64, alt: String) {
        self.list.update(|l| {
            if let Some(a) = l.iter_mut().find(|a| a.key == key) {
                a.alt = alt;
            }
        });
    }
}

/// `attached`' uploaded images with the descriptions typed for them saved, in order; the
/// first refusal's message otherwise.
pub async fn finish(attached: Vec<Attachment>) -> Result<Vec<Media>, String> {
    let mut done = Vec::new();
    for a in attached {
        let Some(media) = a.media else { continue };
        if a.alt.trim() == media.alt {
            done.push(media);
        } else {
            done.push(describe(&media, a.alt.trim()).await?);
        }
    }
    Ok(done)
}

/// The accepted types, for the file picker.
const ACCEPT: &str = "image/jpeg,image/png,image/webp,image/gif";

/// The attach button (a labelled file picker) and the attached images: a progress bar
/// while each uploads, then its thumbnail, a description field and a remove button.
/// `id` names the picker (one per form).
#[component]
pub fn AttachPicker(attachments: Attachments, id: &'static str) -> impl IntoView {
    let on_change = move |ev: leptos::ev::Event| {
        #[cfg(feature = "hydrate")]
        {
            use wasm_bindgen::JsCast as _;
            if let Some(input) = ev
                .target()
                .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
            {
                attachments.add_files(input.files());
                // The same file may be picked again after being removed.
                input.set_value("");
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = ev;
    };
    view! {
        <div class="attach">
            <input type="file" id=id class="visually-hidden" accept=ACCEPT multiple
                disabled=move || !attachments.has_room() on:change=on_change />
            <label for=id class="button button-quiet">"Add image"</label>
            <ul class="attachments" aria-label="Attached images">
                <For each=move || attachments.list.get() key=|a| (a.key, a.media.is_some(), a.error.is_some()) let:a>
                    <AttachmentItem attachments a picker=id />
                </For>
            </ul>
        </div>
    }
}

#[component]
fn AttachmentItem(attachments: Attachments, a: Attachment, picker: &'static str) -> impl IntoView {
    let key = a.key;
    let name = a.name.clone();
    let remove_label = format!("Remove {name}");
    let body = match (a.media, a.error) {
        (_, Some(error)) => view! {
            <p role="alert" class="error">{format!("{name}: {error}")}</p>
        }
        .into_any(),
        (Some(media), None) => {
            let field = format!("{picker}-alt-{key}");
            view! {
                <img src=media.thumbnail_url width=media.width height=media.height
                    alt=format!("Attached: {name}") class="attached-thumb" />
                <label for=field.clone()>{format!("Description of {name}")}</label>
                <input id=field type="text" maxlength="1500" placeholder="What the image shows"
                    prop:value=a.alt
                    on:input=move |ev| attachments.set_alt(key, event_target_value(&ev)) />
            }
            .into_any()
        }
        (None, None) => {
            let progress = Memo::new(move |_| {
                attachments
                    .list
                    .with(|l| l.iter().find(|x| x.key == key).map_or(0.0, |x| x.progress))
            });
            view! {
                <label>
                    {format!("Uploading {name}")}
                    <progress max="1" prop:value=move || progress.get()></progress>
                </label>
            }
            .into_any()
        }
    };
    view! {
        <li class="attachment">
            {body}
            <button type="button" class="button-quiet" aria-label=remove_label
                on:click=move |_| attachments.remove(key)>"Remove"</button>
        </li>
    }
}

/// A form's `paste` handler: image files pasted into it are attached.
pub fn on_paste(attachments: Attachments) -> impl Fn(leptos::ev::ClipboardEvent) + 'static {
    move |ev| {
        #[cfg(feature = "hydrate")]
        {
            let files = ev.clipboard_data().and_then(|d| d.files());
            if files.as_ref().is_some_and(|f| f.length() > 0) {
                ev.prevent_default();
                attachments.add_files(files);
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (ev, attachments);
    }
}

/// A form's `drop` handler: image files dropped on it are attached.
pub fn on_drop(attachments: Attachments) -> impl Fn(leptos::ev::DragEvent) + 'static {
    move |ev| {
        #[cfg(feature = "hydrate")]
        {
            let files = ev.data_transfer().and_then(|d| d.files());
            if files.as_ref().is_some_and(|f| f.length() > 0) {
                ev.prevent_default();
                attachments.add_files(files);
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (ev, attachments);
    }
}

/// A form's `dragover` handler: lets files be dropped (the browser would open them).
pub fn on_dragover(ev: leptos::ev::DragEvent) {
    #[cfg(feature = "hydrate")]
    ev.prevent_default();
    #[cfg(not(feature = "hydrate"))]
    let _ = ev;
}

/// The images of a post or message: thumbnails (lazy, their size set), each opening a
/// full-size view.
#[component]
pub fn MediaGallery(media: Vec<Media>) -> impl IntoView {
    let open = RwSignal::new(None::<Media>);
    let count = media.len();
    let items = media
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let alt = accessible_name(&m, i, count);
            let full = m.clone();
            view! {
                <li>
                    <button type="button" class="thumb" title="Show full size"
                        on:click=move |_| open.set(Some(full.clone()))>
                        <img src=m.thumbnail_url.clone() width=m.width height=m.height
                            loading="lazy" alt=alt />
                    </button>
                </li>
            }
        })
        .collect_view();
    // A modal `<dialog>`: the browser moves the focus into it, keeps it there, and closes
    // it on Escape.
    let dialog = NodeRef::<leptos::html::Dialog>::new();
    Effect::new(move |_| {
        let shown = open.with(Option::is_some);
        #[cfg(feature = "hydrate")]
        if let Some(dialog) = dialog.get() {
            if shown && !dialog.open() {
                let _ = dialog.show_modal();
            } else if !shown && dialog.open() {
                dialog.close();
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (shown, dialog);
    });
    view! {
        <ul class="gallery" aria-label="Images">{items}</ul>
        <dialog node_ref=dialog class="lightbox" aria-label="Full-size image"
            on:close=move |_| open.set(None)>
            {move || open.get().map(|m| {
                let alt = accessible_name(&m, 0, 1);
                view! {
                    <img src=m.url width=m.width height=m.height alt=alt />
                    <button type="button" on:click=move |_| open.set(None)>"Close"</button>
                }
            })}
        </dialog>
    }
}

/// The description, or for an undescribed image a name that still tells images apart.
fn accessible_name(media: &Media, index: usize, count: usize) -> String {
    match (media.alt.is_empty(), count) {
        (false, _) => media.alt.clone(),
        (true, 1) => "Image without description".into(),
        (true, _) => format!("Image {} of {count}, without description", index + 1),
    }
}

/// Sends one file to `POST /v1/media`, reporting the share sent as it goes.
#[cfg(feature = "hydrate")]
async fn upload(file: web_sys::File, progress: impl Fn(f64) + 'static) -> Result<Media, String> {
    let body = http::Body::File(file);
    let (status, text) = http::send("POST", "/v1/media", body, Some(Box::new(progress))).await?;
    http::answer(status, &text)
}

#[cfg(not(feature = "hydrate"))]
async fn describe(_media: &Media, _alt: &str) -> Result<Media, String> {
    Err("images are described in the browser".into())
}

/// Saves a description typed for an upload (`PATCH /v1/media/{id}`).
#[cfg(feature = "hydrate")]
async fn describe(media: &Media, alt: &str) -> Result<Media, String> {
    let body = serde_json::json!({ "alt": alt }).to_string();
    let url = format!("/v1/media/{}", media.id);
    let (status, text) = http::send("PATCH", &url, http::Body::Json(body), None).await?;
    http::answer(status, &text)
}

/// The API calls of this module, through `XMLHttpRequest` (the one browser API that
/// reports upload progress).
#[cfg(feature = "hydrate")]
mod http {
    use crate::model::{ErrorBody, Media};
    use futures::channel::oneshot;
    use wasm_bindgen::{closure::Closure, JsCast as _};
    use web_sys::{ProgressEvent, XmlHttpRequest};

    pub enum Body {
        File(web_sys::File),
        Json(String),
    }

    /// Sends a request with the session cookie and CSRF token; the status and body text.
    pub async fn send(
        method: &str,
        url: &str,
        body: Body,
        progress: Option<Box<dyn Fn(f64)>>,
    ) -> Result<(u16, String), String> {
        let failed = |_| "the request could not be sent".to_string();
        let xhr = XmlHttpRequest::new().map_err(failed)?;
        xhr.open(method, url).map_err(failed)?;
        xhr.set_request_header("X-CSRF-Token", &crate::feed::csrf_token())
            .map_err(failed)?;
        let on_progress = progress.map(|report| {
            Closure::<dyn Fn(ProgressEvent)>::new(move |ev: ProgressEvent| {
                if ev.length_computable() && ev.total() > 0.0 {
                    report(ev.loaded() / ev.total());
                }
            })
        });
        if let (Some(handler), Ok(upload)) = (&on_progress, xhr.upload()) {
            upload.set_onprogress(Some(handler.as_ref().unchecked_ref()));
        }
        let (done, finished) = oneshot::channel::<()>();
        let mut done = Some(done);
        // Fires once, after success, failure or abort alike.
        let on_end = Closure::<dyn FnMut()>::new(move || {
            if let Some(done) = done.take() {
                let _ = done.send(());
            }
        });
        xhr.set_onloadend(Some(on_end.as_ref().unchecked_ref()));
        match body {
            Body::File(file) => xhr.send_with_opt_blob(Some(&file)),
            Body::Json(json) => xhr
                .set_request_header("Content-Type", "application/json")
                .and_then(|()| xhr.send_with_opt_str(Some(&json))),
        }
        .map_err(failed)?;
        let _ = finished.await;
        // The handlers live until the request ends, and go with this call.
        drop((on_end, on_progress));
        match xhr.status() {
            Ok(0) | Err(_) => Err("the network failed; try again".into()),
            Ok(status) => Ok((
                status,
                xhr.response_text().ok().flatten().unwrap_or_default(),
            )),
        }
    }

    /// The `Media` of a 2xx answer, or the API's error message.
    pub fn answer(status: u16, text: &str) -> Result<Media, String> {
        if (200..300).contains(&status) {
            serde_json::from_str(text).map_err(|_| "the server's answer was unreadable".into())
        } else {
            Err(serde_json::from_str::<ErrorBody>(text)
                .map(|e| e.error.message)
                .unwrap_or_else(|_| format!("the upload failed ({status})")))
        }
    }
}
