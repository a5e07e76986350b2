import { test, expect } from '@playwright/test';
import { mainNav, open, signUp, uniqueUsername } from './helpers';

const PASSWORD = 'correct horse battery staple';

test('a followed user posts, the post reaches the follower, delete removes it', async ({ browser }) => {
  const writerCtx = await browser.newContext();
  const readerCtx = await browser.newContext();
  const writer = await writerCtx.newPage();
  const reader = await readerCtx.newPage();
  const writerName = uniqueUsername('writer');
  const readerName = uniqueUsername('reader');
  await signUp(writer, writerName, PASSWORD);
  await signUp(reader, readerName, PASSWORD);

  // The reader finds the writer on the people page and follows them.
  await open(reader, `/people?q=${writerName}`);
  await reader.getByRole('button', { name: `Follow @${writerName}` }).click();
  await expect(reader.getByRole('button', { name: `Unfollow @${writerName}` })).toBeVisible();

  // The writer posts; the counter follows the text.
  await open(writer, '/');
  const text = `Hello from ${writerName} <b>not bold</b>`;
  await writer.getByLabel("What's on your mind?").fill(text);
  await expect(writer.getByText(`${text.length} / 5000`)).toBeVisible();
  await writer.getByRole('button', { name: 'Post' }).click();
  await expect(writer.getByRole('article').getByText(text)).toBeVisible();
  await expect(writer.getByLabel("What's on your mind?")).toHaveValue('');

  // It reaches the follower's timeline, as text.
  await expect(async () => {
    await open(reader, '/');
    await expect(reader.getByRole('article', { name: `Post by ${writerName}` }).getByText(text)).toBeVisible({ timeout: 1000 });
  }).toPass({ timeout: 10_000 });
  await expect(reader.locator('b', { hasText: 'not bold' })).toHaveCount(0);

  // The follower likes it.
  const post = reader.getByRole('article', { name: `Post by ${writerName}` });
  await post.getByRole('button', { name: /Like/ }).click();
  await expect(post.getByRole('button', { name: /Liked/ })).toHaveAttribute('aria-pressed', 'true');

  // The writer deletes it; it leaves the follower's timeline.
  await open(writer, '/');
  await writer.getByRole('article').filter({ hasText: text }).getByRole('button', { name: 'Delete' }).click();
  await expect(writer.getByRole('article').filter({ hasText: text })).toHaveCount(0);
  await open(reader, '/');
  await expect(reader.getByText(text)).toHaveCount(0);

  await writerCtx.close();
  await readerCtx.close();
});

test('an empty post is refused and the profile shows posts and counts', async ({ page }) => {
  const name = uniqueUsername('solo');
  await signUp(page, name, PASSWORD);
  await open(page, '/');
  await expect(page.getByRole('button', { name: 'Post' })).toBeDisabled();
  await page.getByLabel("What's on your mind?").fill('x'.repeat(5001));
  await expect(page.getByText('5001 / 5000')).toBeVisible();
  await expect(page.getByRole('button', { name: 'Post' })).toBeDisabled();
  await page.getByLabel("What's on your mind?").fill('my first post');
  await page.getByRole('button', { name: 'Post' }).click();
  await expect(page.getByRole('article').getByText('my first post')).toBeVisible();

  await mainNav(page).getByRole('link', { name: `@${name}` }).click();
  await expect(page.getByRole('heading', { name })).toBeVisible();
  await expect(page.getByRole('article').getByText('my first post')).toBeVisible();
});

test.describe('in Tokyo', () => {
  test.use({ timezoneId: 'Asia/Tokyo' });

  test('times read in the reader’s own zone, the full time on hover', async ({ page }) => {
    await signUp(page, uniqueUsername('tz'), PASSWORD);
    await open(page, '/');
    await page.getByLabel("What's on your mind?").fill('posted from Tokyo');
    await page.getByRole('button', { name: 'Post' }).click();
    const post = page.getByRole('article', { name: /^Post by / }).filter({ hasText: 'posted from Tokyo' });
    const time = post.locator('time');
    const instant = new Date((await time.getAttribute('datetime')) ?? '');
    const clock = new Intl.DateTimeFormat('en-GB', {
      timeZone: 'Asia/Tokyo', hour: '2-digit', minute: '2-digit', hourCycle: 'h23',
    }).format(instant);
    await expect(time).toHaveText(`Today ${clock}`);
    await expect(time).toHaveAttribute('title', /\(UTC\+09:00\)$/);
  });
});
