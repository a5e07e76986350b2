//! A group's panel in its conversation: renaming the group, its members (the creator may
//! remove anyone; anyone may leave), and adding a member by username.

use crate::{
    chat::{change_member, get_channel, rename_group},
    feed::{csrf_token, viewer_id},
    model::{Channel, Id, User},
};
use leptos::{ev::SubmitEvent, prelude::*};
use leptos_router::hooks::use_navigate;

/// What the panel changes, shared with the conversation's header.
#[derive(Clone, Copy)]
pub(super) struct GroupState {
    pub id: Id,
    pub creator: Id,
    pub name: RwSignal<String>,
    pub members: RwSignal<Vec<User>>,
}

impl GroupState {
    pub fn new(channel: &Channel) -> Self {
        Self {
            id: channel.id,
            creator: channel.creator_id,
            name: RwSignal::new(channel.name.clone()),
            members: RwSignal::new(channel.members.clone()),
        }
    }

    /// Reads the group again after a change.
    async fn reload(self) -> Result<(), String> {
        let channel = get_channel(self.id.to_string())
            .await
            .map_err(|e| e.message)?;
        self.name.set(channel.name);
        self.members.set(channel.members);
        Ok(())
    }
}

#[component]
pub(super) fn GroupPanel(group: GroupState) -> impl IntoView {
    let me = viewer_id();
    let error = RwSignal::new(None::<String>);
    let status = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let navigate = use_navigate();
    // Runs one change, then reads the group again; says what happened.
    let run = move |change: std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<String, String>>>,
    >| {
        busy.set(true);
        error.set(None);
        status.set(None);
        leptos::task::spawn_local(async move {
            match change.await {
                Ok(done) => match group.reload().await {
                    Ok(()) => status.set(Some(done)),
                    Err(e) => error.set(Some(e)),
                },
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
        });
    };
    let (new_name, set_new_name) = signal(group.name.get_untracked());
    let rename = move |ev: SubmitEvent| {
        ev.prevent_default();
        let name = new_name.get_untracked();
        run(Box::pin(async move {
            rename_group(csrf_token(), group.id.to_string(), name)
                .await
                .map(|c| format!("Renamed to {}.", c.name))
                .map_err(|e| e.message)
        }));
    };
    let (username, set_username) = signal(String::new());
    let add = move |ev: SubmitEvent| {
        ev.prevent_default();
        let name = username.get_untracked();
        set_username.set(String::new());
        run(Box::pin(async move {
            change_member(csrf_token(), group.id.to_string(), name.clone(), true)
                .await
                .map(|()| format!("Added {}.", name.trim()))
                .map_err(|e| e.message)
        }));
    };
    let remove = move |user: User| {
        let leaving = Some(user.id) == me;
        let navigate = navigate.clone();
        busy.set(true);
        error.set(None);
        status.set(None);
        leptos::task::spawn_local(async move {
            match change_member(
                csrf_token(),
                group.id.to_string(),
                user.username.clone(),
                false,
            )
            .await
            {
                Ok(()) if leaving => navigate("/chat", Default::default()),
                Ok(()) => match group.reload().await {
                    Ok(()) => status.set(Some(format!("Removed {}.", user.display_name))),
                    Err(e) => error.set(Some(e)),
                },
                Err(e) => error.set(Some(e.message)),
            }
            busy.set(false);
        });
    };
    let i_created = me == Some(group.creator);
    view! {
        <details class="group-panel">
            <summary>{move || format!("Members ({}) and settings", group.members.with(Vec::len))}</summary>
            <ul class="members" aria-label="Members">
                <For each=move || group.members.get() key=|u| u.id let:user>
                    {
                        let mine = Some(user.id) == me;
                        let can_remove = mine || i_created;
                        let label = if mine {
                            "Leave group".to_string()
                        } else {
                            format!("Remove {}", user.display_name)
                        };
                        let remove = remove.clone();
                        let who = user.clone();
                        view! {
                            <li>
                                <span>{user.display_name.clone()}</span>
                                " "<span class="muted">{format!("@{}", user.username)}</span>
                                {(user.id == group.creator).then(|| view! { " " <span class="badge">"Creator"</span> })}
                                {can_remove.then(|| view! {
                                    <button type="button" class="button-quiet danger" disabled=move || busy.get()
                                        on:click=move |_| remove(who.clone())>{label}</button>
                                })}
                            </li>
                        }
                    }
                </For>
            </ul>
            <form class="group-form" on:submit=add>
                <label for="group-add-member">"Add a member (username)"</label>
                <input id="group-add-member" type="text" autocapitalize="none" spellcheck="false" required
                    prop:value=username on:input=move |ev| set_username.set(event_target_value(&ev)) />
                <button type="submit" disabled=move || busy.get()>"Add"</button>
            </form>
            <form class="group-form" on:submit=rename>
                <label for="group-rename">"Group name"</label>
                <input id="group-rename" type="text" maxlength="100" required
                    prop:value=new_name on:input=move |ev| set_new_name.set(event_target_value(&ev)) />
                <button type="submit" disabled=move || busy.get()>"Rename"</button>
            </form>
            <Show when=move || error.with(Option::is_some)>
                <p role="alert" class="error">{move || error.get()}</p>
            </Show>
            <p role="status" class="muted">{move || status.get()}</p>
        </details>
    }
}
