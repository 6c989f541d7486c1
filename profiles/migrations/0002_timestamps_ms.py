# Every model stores time as epoch milliseconds (*_ms): existing datetimes are copied, then dropped.

import profiles.timestamps
from profiles.timestamps import datetimes_to_ms
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('profiles', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='profileselection',
            name='created_at_ms',
            field=models.BigIntegerField(default=profiles.timestamps.now_ms, editable=False),
        ),
        migrations.AddField(
            model_name='profileselection',
            name='updated_at_ms',
            field=models.BigIntegerField(default=profiles.timestamps.now_ms, editable=False),
        ),
        migrations.AddField(
            model_name='registry',
            name='created_at_ms',
            field=models.BigIntegerField(default=profiles.timestamps.now_ms, editable=False),
        ),
        migrations.AddField(
            model_name='registry',
            name='updated_at_ms',
            field=models.BigIntegerField(default=profiles.timestamps.now_ms, editable=False),
        ),
        datetimes_to_ms('profiles', {'registry': ['created_at', 'updated_at'], 'profileselection': ['updated_at']}),
        migrations.RemoveField(
            model_name='profileselection',
            name='updated_at',
        ),
        migrations.RemoveField(
            model_name='registry',
            name='created_at',
        ),
        migrations.RemoveField(
            model_name='registry',
            name='updated_at',
        ),
    ]
