import { test, expect, type Page } from '@playwright/test';
import { mainNav, open, person } from './helpers';

// The suite's server runs with KITH_PRESENCE_TIMEOUT_SECS=12 (scripts/test.sh): just over the
// browser's 10 s heartbeat, so people who stay are never taken offline.
const PASSWORD = 'correct horse battery staple';

async function follow(page: Page, name: string): Promise<void> {
  await open(page, `/people?q=${name}`);
  await page.getByRole('button', { name: `Follow @${name}` }).click();
  await expect(page.getByRole('button', { name: `Unfollow @${name}` })).toBeVisible();
}

test.describe.configure({ timeout: 60_000 });

test("a friend's dot turns online, and offline once they have been gone for the timeout", async ({ browser }) => {
  const a = await person(browser, 'pres_a', PASSWORD);
  const b = await person(browser, 'pres_b', PASSWORD);
  await follow(a.page, b.name);
  await follow(b.page, a.name);

  // B has a page open: A sees B online.
  await open(a.page, `/u/${b.name}`);
  await expect(a.page.getByRole('status', { name: `${b.name} is online` })).toBeVisible();

  // B leaves; after the timeout A's page turns B's dot offline by itself.
  await b.page.context().close();
  await expect(a.page.getByRole('status', { name: `${b.name} is offline` })).toBeVisible({ timeout: 30_000 });
  await expect(a.page.getByText(/Offline · last seen/)).toBeVisible();

  // B comes back: online again, without A reloading.
  const back = await (await browser.newContext()).newPage();
  await open(back, '/signin');
  await back.getByLabel('Username').fill(b.name);
  await back.getByLabel('Password').fill(PASSWORD);
  await back.getByRole('button', { name: 'Sign in' }).click();
  await expect(mainNav(back).getByRole('link', { name: `@${b.name}` })).toBeVisible();
  await expect(a.page.getByRole('status', { name: `${b.name} is online` })).toBeVisible({ timeout: 10_000 });
});

test('a typing indicator appears while the other person writes', async ({ browser }) => {
  const a = await person(browser, 'type_a', PASSWORD);
  const b = await person(browser, 'type_b', PASSWORD);
  await open(a.page, `/u/${b.name}`);
  await a.page.getByRole('button', { name: 'Message' }).click();
  await expect(a.page).toHaveURL(/\/chat\/\d+$/);
  const url = new URL(a.page.url()).pathname;
  await open(b.page, url);

  await b.page.getByRole('textbox', { name: 'Message' }).fill('I am writing some');
  await expect(a.page.getByText(`${b.name} is typing…`)).toBeVisible();
  await b.page.getByRole('textbox', { name: 'Message' }).press('Enter');
  await expect(a.page.getByRole('list', { name: 'Messages' }).getByText('I am writing some')).toBeVisible();
  // The message ends the indicator.
  await expect(a.page.getByText(`${b.name} is typing…`)).toHaveCount(0);
  // A reads it; B sees the receipt.
  await expect(b.page.getByText(`Seen by ${a.name}`)).toBeVisible();
});

test('a new post from a followed user raises the banner and a notification', async ({ browser }) => {
  const writer = await person(browser, 'np_w', PASSWORD);
  const reader = await person(browser, 'np_r', PASSWORD);
  await follow(reader.page, writer.name);
  await open(reader.page, '/');

  await open(writer.page, '/');
  const text = `Fresh news from ${writer.name}`;
  await writer.page.getByLabel("What's on your mind?").fill(text);
  await writer.page.getByRole('button', { name: 'Post' }).click();
  await expect(writer.page.getByRole('article').getByText(text)).toBeVisible();

  // The reader's timeline offers it without jumping, and shows it on click.
  const banner = reader.page.getByRole('button', { name: '1 new post' });
  await expect(banner).toBeVisible({ timeout: 10_000 });
  await expect(reader.page.getByRole('article').getByText(text)).toHaveCount(0);
  await banner.click();
  await expect(reader.page.getByRole('article', { name: `Post by ${writer.name}` }).getByText(text)).toBeVisible();
  await expect(banner).toHaveCount(0);

  // The badge counts it; the list shows it; marking read clears the badge.
  const link = mainNav(reader.page).getByRole('link', { name: /Notifications/ });
  await expect(link.getByLabel('1 unread')).toBeVisible();
  await link.click();
  await expect(reader.page).toHaveURL(/\/notifications$/);
  const list = reader.page.getByRole('list', { name: 'Notifications' });
  await expect(list.getByRole('link', { name: `${writer.name} posted` })).toBeVisible();
  await expect(list.getByText(text)).toBeVisible();
  await reader.page.getByRole('button', { name: 'Mark all as read' }).click();
  await expect(link.getByLabel('1 unread')).toHaveCount(0);
  await expect(reader.page.getByRole('button', { name: 'Mark all as read' })).toHaveCount(0);
});
