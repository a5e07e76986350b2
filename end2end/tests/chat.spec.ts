import { test, expect, type Browser, type Page } from '@playwright/test';
import { mainNav, open, person, signIn, uniqueUsername } from './helpers';

const PASSWORD = 'correct horse battery staple';

async function say(page: Page, text: string): Promise<void> {
  await page.getByRole('textbox', { name: 'Message' }).fill(text);
  await page.getByRole('textbox', { name: 'Message' }).press('Enter');
  await expect(page.getByRole('list', { name: 'Messages' }).getByText(text)).toBeVisible();
  await expect(page.getByText('Sending…')).toHaveCount(0);
}

function messages(page: Page) {
  return page.getByRole('list', { name: 'Messages' });
}

test.describe.configure({ timeout: 60_000 });

test('two people chat live, over WebSocket and over long-poll, and history survives a reload', async ({ browser }) => {
  const a = await person(browser, 'chat_a', PASSWORD);
  const b = await person(browser, 'chat_b', PASSWORD);

  // A opens B's profile and chooses Message.
  await open(a.page, `/u/${b.name}`);
  await a.page.getByRole('button', { name: 'Message' }).click();
  await expect(a.page).toHaveURL(/\/chat\/\d+$/);
  const url = new URL(a.page.url()).pathname;
  await expect(a.page.getByRole('heading', { name: b.name })).toBeVisible();

  // B finds the conversation in the list.
  await open(b.page, '/chat');
  await expect(b.page.getByRole('list', { name: 'Conversations' }).getByRole('link', { name: a.name })).toBeVisible();
  await open(b.page, url);

  await say(a.page, 'hello over the socket <b>plain</b>');
  await expect(messages(b.page).getByText('hello over the socket <b>plain</b>')).toBeVisible();
  await say(b.page, 'hi back');
  await expect(messages(a.page).getByText('hi back')).toBeVisible();

  // B switches to long-polling: still live both ways, and no socket is opened.
  let sockets = 0;
  b.page.on('websocket', () => { sockets += 1; });
  await open(b.page, `${url}?transport=longpoll`);
  await say(a.page, 'reaches the long-poller');
  await expect(messages(b.page).getByText('reaches the long-poller')).toBeVisible();
  await say(b.page, 'sent while long-polling');
  await expect(messages(a.page).getByText('sent while long-polling')).toBeVisible();
  expect(sockets).toBe(0);

  // A reload keeps the history, in order.
  await a.page.reload();
  await expect(messages(a.page).getByRole('listitem')).toHaveCount(4);
  await expect(messages(a.page).getByRole('listitem').first()).toContainText('hello over the socket');
  await expect(messages(a.page).getByRole('listitem').last()).toContainText('sent while long-polling');
});

test('a group of three chats together', async ({ browser }) => {
  const a = await person(browser, 'grp_a', PASSWORD);
  const b = await person(browser, 'grp_b', PASSWORD);
  const c = await person(browser, 'grp_c', PASSWORD);

  await open(a.page, '/chat');
  await a.page.getByLabel('Group name').fill('Weekend plans');
  await a.page.getByLabel('Members (usernames, separated by commas)').fill(`${b.name}, nobody_such_user`);
  await a.page.getByRole('button', { name: 'Create group' }).click();
  await expect(a.page.getByRole('alert')).toContainText('not found');
  await a.page.getByLabel('Members (usernames, separated by commas)').fill(`${b.name}, ${c.name}`);
  await a.page.getByRole('button', { name: 'Create group' }).click();
  await expect(a.page.getByRole('heading', { name: 'Weekend plans' })).toBeVisible();
  const url = new URL(a.page.url()).pathname;

  for (const p of [b.page, c.page]) {
    await open(p, '/chat');
    await expect(p.getByRole('link', { name: 'Weekend plans' })).toBeVisible();
    await open(p, url);
  }
  await say(c.page, 'count me in');
  await expect(messages(a.page).getByText('count me in')).toBeVisible();
  await expect(messages(b.page).getByText('count me in')).toBeVisible();
  await say(a.page, 'see you saturday');
  await expect(messages(b.page).getByText('see you saturday')).toBeVisible();
  await expect(messages(c.page).getByText('see you saturday')).toBeVisible();
  await expect(mainNav(a.page).getByRole('link', { name: 'Chat' })).toBeVisible();
});

test('a sender edits and deletes a message, and every device of the other side sees it', async ({ browser }) => {
  const a = await person(browser, 'edit_a', PASSWORD);
  const b = await person(browser, 'edit_b', PASSWORD);
  await open(a.page, `/u/${b.name}`);
  await a.page.getByRole('button', { name: 'Message' }).click();
  await expect(a.page).toHaveURL(/\/chat\/\d+$/);
  const url = new URL(a.page.url()).pathname;
  await open(b.page, url);
  // B's second device receives by long-poll.
  const laptop = await (await browser.newContext()).newPage();
  await signIn(laptop, b.name, PASSWORD);
  await open(laptop, `${url}?transport=longpoll`);

  await say(a.page, 'meet at five');
  await say(b.page, 'ok');
  for (const p of [b.page, laptop]) {
    await expect(messages(p).getByText('meet at five')).toBeVisible();
    // Only one's own messages can be changed.
    await expect(messages(p).getByRole('button', { name: /^Edit message/ })).toHaveCount(1);
  }
  await expect(messages(a.page).getByRole('listitem').first()).toContainText('meet at five');

  // Escape leaves the message as it was; Enter saves.
  await messages(a.page).getByRole('button', { name: 'Edit message: meet at five' }).click();
  const box = a.page.getByRole('textbox', { name: 'Edit message' });
  await expect(box).toBeFocused();
  await box.fill('never mind');
  await box.press('Escape');
  await expect(messages(a.page).getByText('meet at five')).toBeVisible();
  await messages(a.page).getByRole('button', { name: 'Edit message: meet at five' }).click();
  await box.fill('meet at six');
  await box.press('Enter');
  for (const p of [a.page, b.page, laptop]) {
    await expect(messages(p).getByText('meet at six')).toBeVisible();
    await expect(messages(p).getByText('(edited)')).toBeVisible();
    await expect(messages(p).getByText('meet at five')).toHaveCount(0);
  }

  await messages(a.page).getByRole('button', { name: 'Delete message: meet at six' }).click();
  await messages(a.page).getByRole('button', { name: 'Yes, delete' }).click();
  for (const p of [a.page, b.page, laptop]) {
    await expect(messages(p).getByText('Message deleted')).toBeVisible();
    await expect(messages(p).getByText('meet at six')).toHaveCount(0);
  }
  // History keeps the place of the deleted message, without its words.
  await b.page.reload();
  await expect(messages(b.page).getByRole('listitem')).toHaveCount(2);
  await expect(messages(b.page).getByRole('listitem').first()).toContainText('Message deleted');
  await expect(messages(b.page).getByText('meet at six')).toHaveCount(0);
});

test('the conversation list keeps the keyboard focus on live updates and pages on request', async ({ browser, request }) => {
  const a = await person(browser, 'list_a', PASSWORD);
  // Someone else starts 21 groups with A, through the API.
  const b = uniqueUsername('list_b');
  const registered = await request.post('/v1/auth/register', { data: { username: b, password: PASSWORD } });
  expect(registered.status()).toBe(201);
  const auth = { Authorization: `Bearer ${(await registered.json()).token}` };
  const groups: Record<string, string> = {};
  for (let i = 0; i < 21; i++) {
    const name = `Club ${String(i).padStart(2, '0')}`;
    const created = await request.post('/v1/chat/groups', { headers: auth, data: { name, members: [a.name] } });
    expect(created.status()).toBe(201);
    groups[name] = (await created.json()).id;
  }

  await open(a.page, '/chat');
  const list = a.page.getByRole('list', { name: 'Conversations' });
  await expect(list.getByRole('link')).toHaveCount(20);
  await list.getByRole('link', { name: 'Club 05' }).focus();

  // A message elsewhere reorders the list; the focus stays where it was.
  const sent = await request.post(`/v1/chat/channels/${groups['Club 10']}/messages`, {
    headers: auth, data: { content: 'first!', client_msg_id: `list-${Date.now()}` },
  });
  expect(sent.status()).toBe(201);
  await expect(list.getByRole('listitem').first()).toContainText('first!');
  await expect(list.getByRole('link', { name: 'Club 05' })).toBeFocused();

  // The rest of the list, from the keyboard: the focus moves to the first one shown.
  const more = a.page.getByRole('button', { name: /^Show more conversations/ });
  await more.focus();
  await a.page.keyboard.press('Enter');
  await expect(list.getByRole('link')).toHaveCount(21);
  await expect(list.getByRole('link').nth(20)).toBeFocused();
  await expect(more).toHaveCount(0);
});

test('a group is renamed and its members changed from the conversation', async ({ browser }) => {
  const a = await person(browser, 'gm_a', PASSWORD);
  const b = await person(browser, 'gm_b', PASSWORD);
  const c = await person(browser, 'gm_c', PASSWORD);
  await open(a.page, '/chat');
  await a.page.getByLabel('Group name').fill('Book club');
  await a.page.getByLabel('Members (usernames, separated by commas)').fill(b.name);
  await a.page.getByRole('button', { name: 'Create group' }).click();
  await expect(a.page.getByRole('heading', { name: 'Book club' })).toBeVisible();
  const url = new URL(a.page.url()).pathname;

  await a.page.getByText('Members (2) and settings').click();
  const members = a.page.getByRole('list', { name: 'Members' });
  await expect(members.getByRole('listitem')).toHaveCount(2);
  await a.page.getByLabel('Add a member (username)').fill(c.name);
  await a.page.getByLabel('Add a member (username)').press('Enter');
  await expect(a.page.getByText(`Added ${c.name}.`)).toBeVisible();
  await expect(members.getByRole('listitem')).toHaveCount(3);
  await open(c.page, url);
  await expect(c.page.getByRole('heading', { name: 'Book club' })).toBeVisible();

  await a.page.getByLabel('Group name').fill('Reading circle');
  await a.page.getByRole('button', { name: 'Rename' }).click();
  await expect(a.page.getByRole('heading', { name: 'Reading circle' })).toBeVisible();
  await open(c.page, url);
  await expect(c.page.getByRole('heading', { name: 'Reading circle' })).toBeVisible();

  // The creator removes a member; a member may only leave.
  await a.page.getByRole('button', { name: `Remove ${b.name}` }).click();
  await expect(members.getByRole('listitem')).toHaveCount(2);
  await open(b.page, url);
  await expect(b.page.getByRole('alert')).toContainText('not a member');
  await c.page.getByText(/^Members \(\d+\) and settings$/).click();
  await expect(c.page.getByRole('button', { name: `Remove ${a.name}` })).toHaveCount(0);
  await c.page.getByRole('button', { name: 'Leave group' }).click();
  await expect(c.page).toHaveURL(/\/chat$/);
  await expect(c.page.getByRole('link', { name: 'Reading circle' })).toHaveCount(0);
});

test('a send that fails can be retried, and a message is never shown twice', async ({ browser }) => {
  const a = await person(browser, 'retry_a', PASSWORD);
  const b = await person(browser, 'retry_b', PASSWORD);
  await open(a.page, `/u/${b.name}`);
  await a.page.getByRole('button', { name: 'Message' }).click();
  await expect(a.page).toHaveURL(/\/chat\/\d+$/);
  const url = new URL(a.page.url()).pathname;
  await open(b.page, url);
  await say(a.page, 'before the outage');
  await expect(messages(b.page).getByText('before the outage')).toBeVisible();

  // The request never reaches the server: the message stays on A's screen as not sent.
  await a.page.route('**/api/send_message*', (route) => route.abort(), { times: 1 });
  const box = a.page.getByRole('textbox', { name: 'Message' });
  await box.fill('sent on the second try');
  await box.press('Enter');
  await expect(a.page.getByRole('alert')).toContainText('Not sent');
  await expect(messages(b.page).getByText('sent on the second try')).toHaveCount(0);
  await a.page.getByRole('button', { name: 'Retry' }).click();
  await expect(a.page.getByRole('alert')).toHaveCount(0);
  await expect(messages(b.page).getByText('sent on the second try')).toBeVisible();

  // The server stores the message but its answer is lost: the live copy settles it.
  await a.page.route(
    '**/api/send_message*',
    async (route) => {
      await route.fetch();
      await route.abort();
    },
    { times: 1 },
  );
  await box.fill('stored though unanswered');
  await box.press('Enter');
  await expect(messages(b.page).getByText('stored though unanswered')).toBeVisible();
  await expect(messages(a.page).getByText('stored though unanswered')).toHaveCount(1);
  await expect(a.page.getByText('Sending…')).toHaveCount(0);

  // After a reload each message is there once, in order.
  for (const p of [a.page, b.page]) {
    await p.reload();
    await expect(messages(p).getByRole('listitem')).toHaveCount(3);
    await expect(messages(p).getByRole('listitem').nth(1)).toContainText('sent on the second try');
    await expect(messages(p).getByRole('listitem').last()).toContainText('stored though unanswered');
  }
});

/** B's browser hears of two chat servers, `first` (the least loaded) then the page's own node. */
async function discovering(browser: Browser, first: (origin: string) => string) {
  const a = await person(browser, 'disc_a', PASSWORD);
  const b = await person(browser, 'disc_b', PASSWORD);
  await open(a.page, `/u/${b.name}`);
  await a.page.getByRole('button', { name: 'Message' }).click();
  await expect(a.page).toHaveURL(/\/chat\/\d+$/);
  const origin = new URL(b.page.url()).origin.replace(/^http/, 'ws');
  const live = `${origin}/v1/chat/ws`;
  const dead = first(origin);
  await b.page.route('**/chat_servers*', (route) =>
    route.fulfill({
      contentType: 'application/json',
      body: JSON.stringify([
        { url: dead, node_id: 7, connections: 0 },
        { url: live, node_id: 1, connections: 5 },
      ]),
    }),
  );
  const sockets: string[] = [];
  b.page.on('websocket', (ws) => sockets.push(ws.url()));
  // Not `open`: the failed connection is an expected browser error.
  await b.page.goto(new URL(a.page.url()).pathname);
  await expect(b.page.locator('body[data-hydrated]')).toHaveCount(1);
  return { a, b, dead, live, sockets };
}

test('the live client fails over from a dead chat server to the next one discovery lists', async ({ browser }) => {
  // A server that refuses the socket (here: a path nothing serves on the page's own node).
  const { a, b, dead, live, sockets } = await discovering(browser, (origin) => `${origin}/v1/chat/gone`);
  await say(a.page, 'found you on the next server');
  await expect(messages(b.page).getByText('found you on the next server')).toBeVisible();
  expect(sockets[0]).toBe(dead);
  expect(sockets).toContain(live);
});

test('a chat server the browser cannot reach at all does not stall the live client', async ({ browser }) => {
  // The page's policy does not name this one: the browser blocks it without a close event,
  // and the client gives up on it once it has not opened within 5 s.
  const { a, b, live, sockets } = await discovering(browser, () => 'ws://127.0.0.1:9/v1/chat/ws');
  await say(a.page, 'still found you');
  await expect(messages(b.page).getByText('still found you')).toBeVisible({ timeout: 20_000 });
  expect(sockets).toEqual([live]);
});
